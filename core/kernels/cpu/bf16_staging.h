// Bf16Staging: how CpuBackend runs an op on bf16 tensors ("bf16 storage, f32 arithmetic",
// the dtype rules of the CUDA backend, docs/cuda.md "Dtypes") without a second set of kernels.
//
// An op whose leading floating tensor is bf16 makes one Bf16Staging and passes each of its
// floating tensors through input()/output(). Those check the tensor is a bf16 CPU tensor,
// as the CUDA backend checks that every floating tensor of a call shares one dtype, and
// return an f32 scratch copy (outputs the op only overwrites are not read). run() then calls
// the op's own f32 path on the scratch tensors and, once that succeeded, rounds every
// output once with loom::to_bf16 into the caller's tensor. Tensors that are always f32
// (mean, rstd, lse, losses, stats, dloss, AdamW's param, m and v) bypass the staging and
// meet the f32 path's own checks. So a bf16 result is exactly to_bf16 of the f32 op run on
// the bf16 values, and a call with only f32 tensors never comes here: it costs one dtype
// test and no copy.
//
// Aliasing: tensors that cover exactly the same memory share one scratch tensor, so in-place
// ops (rope, scale_inplace) and aliased arguments (cross_entropy_backward's dlogits ==
// logits) see the alias the f32 path expects. A staged output that partly overlaps another
// staged tensor is refused: the write-back could not reproduce what the f32 op did.
//
// Ownership: the staging object owns its scratch tensors (allocated per call; the bf16 path
// favours clarity over speed) and holds references to the caller's tensors until run().
// Threads: one op at a time, like the backend; the conversions use OpenMP internally.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace loom::cpu::detail {

inline bool is_bf16(const Tensor& t) { return t.defined() && t.dtype() == DType::BF16; }

class Bf16Staging {
 public:
  // Update: the op reads the output's current values (it adds into them, transforms them in
  // place, or writes only some of them). Overwrite: it writes every element without reading.
  enum class Use { Overwrite, Update };

  explicit Bf16Staging(const char* op) : op_(op) {}

  // A bf16 tensor the op reads; returns its values as an f32 tensor of the same shape.
  Tensor input(const char* name, const Tensor& t);
  // The same, but an undefined tensor (an absent bias) stays undefined.
  Tensor optional_input(const char* name, const Tensor& t);
  // A bf16 tensor the op writes; returns the f32 tensor to write, rounded back by run().
  Tensor output(const char* name, Tensor& t, Use use);
  // The same, but an undefined tensor (a skipped gradient) stays undefined.
  Tensor optional_output(const char* name, Tensor& t, Use use);

  // Runs the op's f32 path, then writes every output back. If the f32 path refuses its
  // (scratch) arguments, the caller's outputs are left untouched and the message says that
  // the f32 tensors it names stand for the caller's bf16 ones.
  template <typename F32Op>
  void run(F32Op&& f32_op) {
    try {
      f32_op();
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(e.what()) +
                                  " (bf16 arguments are checked as their f32 copies, which keep their shapes)");
    }
    write_back();
  }

 private:
  struct Entry {
    const char* name;
    Tensor original;  // the caller's bf16 tensor (shares its memory)
    Tensor scratch;   // f32, same shape
    bool filled;      // scratch holds the original's values
    bool written;     // round scratch back into original after the op
  };

  Tensor stage(const char* name, const Tensor& t, bool read, bool written);
  void write_back();

  const char* op_;
  std::vector<Entry> entries_;
};

}  // namespace loom::cpu::detail
