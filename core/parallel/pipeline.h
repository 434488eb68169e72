// Pipeline-parallel schedules over the stages of a model: micro-batches flow forward from
// stage 0 to stage pp-1 and their gradients flow back, activations and gradients moving
// between neighbouring stages with nonblocking point-to-point transfers (Comm isend/irecv).
//
//   1F1B (default; Narayanan et al. 2021, PipeDream-Flush): stage s runs min(pp-1-s, m)
//     warm-up forwards, then alternates one forward and one backward, then drains the
//     remaining backwards. At most pp-s micro-batches are in flight on stage s, so
//     activation memory is bounded by pp slots instead of m.
//   GPipe (fallback): every forward, then every backward; m slots of activations.
//
// Both have the bubble (pp-1)/(m+pp-1) of the step in theory. The last stage runs a
// micro-batch's head (forward, loss and backward, by the caller's StageWork) as soon as its
// forward completes, then its backward, under both schedules.
//
// Micro-batches all have the same [B, T]. Tags: activations 2i, gradients 2i+1 for
// micro-batch i, on the pp communicator.
//
// Ownership: run_pipeline borrows the model, comm and work for the call. Threads: one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/comm.h"
#include "core/model/transformer.h"

namespace loom::parallel {

enum class Schedule { OneFOneB, GPipe };
const char* schedule_name(Schedule schedule);        // "1f1b", "gpipe"
Schedule parse_schedule(const std::string& text);    // throws std::invalid_argument

// The pipeline group of a stage: null comm when pp = 1.
struct PpGroup {
  Comm* comm = nullptr;
  int rank = 0;  // the stage
  int size = 1;
  bool first() const { return rank == 0; }
  bool last() const { return rank == size - 1; }
};

// What is specific to the trainer: the input of the first stage and the loss at the last.
class StageWork {
 public:
  virtual ~StageWork() = default;
  // First stage: the token ids [B, T] of micro-batch `micro` (kept alive until its backward).
  virtual Tensor input_ids(int micro) = 0;
  // Last stage, training: runs the head and loss forward AND backward on the stage output
  // `hidden` of micro-batch `micro` (activation slot `slot`) and returns ∂L/∂hidden (may be
  // the model's shared backward buffer).
  virtual const Tensor& head_forward_backward(model::Transformer& model, const Tensor& hidden, int micro,
                                              int slot) = 0;
  // Last stage, evaluation: the head and loss forward only.
  virtual void head_forward(model::Transformer&, const Tensor&, int, int) {}
};

struct PipelineTimes {
  double total_s = 0;    // wall time of the whole schedule on this stage
  double compute_s = 0;  // inside forward/backward/head work
  double wait_s = 0;     // blocked receiving from a neighbour (bubble + transfer)
  int micro_batches = 0;
  // The idle share of this stage: 1 - compute / total.
  double bubble() const { return total_s > 0 ? 1.0 - compute_s / total_s : 0.0; }
  // (pp-1)/(m+pp-1).
  static double theoretical_bubble(int stages, int micro_batches);
};

// One training step's forward and backward over `micro_batches` micro-batches of [batch, seq]
// tokens. Gradients accumulate into the model's ParameterSet (the caller zeroes them first
// and reduces them after). `on_last_backward` (may be empty) is called just before the last
// micro-batch's backward starts on this stage, so a gradient reducer can start reducing
// layers as they finish.
PipelineTimes run_pipeline(model::Transformer& model, const PpGroup& pp, Schedule schedule, int micro_batches,
                           std::int64_t batch, std::int64_t seq, StageWork& work,
                           const std::function<void()>& on_last_backward = {});

// Forward only (evaluation): every micro-batch through the stages, head_forward on the last.
PipelineTimes run_pipeline_forward(model::Transformer& model, const PpGroup& pp, int micro_batches,
                                   std::int64_t batch, std::int64_t seq, StageWork& work);

}  // namespace loom::parallel
