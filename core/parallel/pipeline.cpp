#include "core/parallel/pipeline.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

namespace loom::parallel {

const char* schedule_name(Schedule schedule) { return schedule == Schedule::GPipe ? "gpipe" : "1f1b"; }

Schedule parse_schedule(const std::string& text) {
  if (text == "1f1b") return Schedule::OneFOneB;
  if (text == "gpipe") return Schedule::GPipe;
  throw std::invalid_argument("unknown pipeline schedule '" + text + "' (expected 1f1b or gpipe)");
}

double PipelineTimes::theoretical_bubble(int stages, int micro_batches) {
  return static_cast<double>(stages - 1) / static_cast<double>(micro_batches + stages - 1);
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point from, Clock::time_point to) { return std::chrono::duration<double>(to - from).count(); }

int activation_tag(int micro) { return 2 * micro; }
int gradient_tag(int micro) { return 2 * micro + 1; }

// One stage's run of a schedule: the forward and backward of single micro-batches, with the
// transfers to the neighbours and the time accounting.
class StageRunner {
 public:
  StageRunner(model::Transformer& model, const PpGroup& pp, std::int64_t batch, std::int64_t seq, StageWork& work,
              int slots)
      : model_(model), pp_(pp), batch_(batch), seq_(seq), work_(work), slots_(slots),
        slot_sends_(static_cast<std::size_t>(slots)) {
    if (pp_.size > 1 && pp_.comm == nullptr) throw std::invalid_argument("run_pipeline: pp > 1 without a communicator");
    const Shape hidden{batch, seq, model.dims().d_model};
    const DType dtype = model.dims().dtype;
    if (!pp_.last()) grad_in_ = Tensor::empty(hidden, dtype, model.backend().device());
    if (!pp_.first()) {
      for (auto& buffer : grad_out_) buffer = Tensor::empty(hidden, dtype, model.backend().device());
    }
  }

  int slot_of(int micro) const { return micro % slots_; }

  // Forward of one micro-batch; on the last stage also its head (and, when training, the
  // head's backward, leaving ∂L/∂hidden for backward()).
  void forward(int micro, bool training) {
    const int slot = slot_of(micro);
    // The slot's previous occupant's activation send must be done before its output buffer
    // is overwritten.
    slot_sends_[static_cast<std::size_t>(slot)].wait();
    const Tensor* input = nullptr;
    if (pp_.first()) {
      const auto t0 = Clock::now();
      input = &model_.embed_forward(work_.input_ids(micro), slot);
      times_.compute_s += seconds(t0, Clock::now());
    } else {
      Tensor& in = model_.stage_input(batch_, seq_, slot);
      receive(in, pp_.rank - 1, activation_tag(micro));
      input = &in;
    }
    const auto t0 = Clock::now();
    const Tensor& out = model_.blocks_forward(*input, slot);
    if (pp_.last()) {
      if (training) {
        head_grad_ = &work_.head_forward_backward(model_, out, micro, slot);
      } else {
        work_.head_forward(model_, out, micro, slot);
      }
      times_.compute_s += seconds(t0, Clock::now());
      return;
    }
    times_.compute_s += seconds(t0, Clock::now());
    slot_sends_[static_cast<std::size_t>(slot)] = pp_.comm->send_async(out, pp_.rank + 1, activation_tag(micro));
  }

  void backward(int micro) {
    const int slot = slot_of(micro);
    const Tensor* grad = head_grad_;
    if (!pp_.last()) {
      receive(grad_in_, pp_.rank + 1, gradient_tag(micro));
      grad = &grad_in_;
    }
    const auto t0 = Clock::now();
    const Tensor& dinput = model_.blocks_backward(*grad, slot);
    if (pp_.first()) {
      model_.embed_backward(dinput, slot);
      times_.compute_s += seconds(t0, Clock::now());
      return;
    }
    // dinput is the model's shared backward buffer, overwritten by the next backward: send
    // a copy, alternating two buffers so one transfer can be in flight while computing.
    const std::size_t which = static_cast<std::size_t>(micro % 2);
    grad_sends_[which].wait();
    model_.backend().copy(dinput, grad_out_[which]);
    times_.compute_s += seconds(t0, Clock::now());
    grad_sends_[which] = pp_.comm->send_async(grad_out_[which], pp_.rank - 1, gradient_tag(micro));
  }

  PipelineTimes finish(Clock::time_point start, int micro_batches) {
    for (Request& r : slot_sends_) r.wait();
    for (Request& r : grad_sends_) r.wait();
    times_.total_s = seconds(start, Clock::now());
    times_.micro_batches = micro_batches;
    return times_;
  }

 private:
  void receive(Tensor& into, int peer, int tag) {
    const auto t0 = Clock::now();
    Request request = pp_.comm->recv_async(into, peer, tag);
    request.wait();
    times_.wait_s += seconds(t0, Clock::now());
  }

  model::Transformer& model_;
  const PpGroup& pp_;
  std::int64_t batch_, seq_;
  StageWork& work_;
  int slots_;
  std::vector<Request> slot_sends_;
  Request grad_sends_[2];
  Tensor grad_in_;
  Tensor grad_out_[2];
  const Tensor* head_grad_ = nullptr;
  PipelineTimes times_;
};

void check_micro_batches(int micro_batches) {
  if (micro_batches < 1) {
    throw std::invalid_argument("run_pipeline: needs at least one micro-batch, got " + std::to_string(micro_batches));
  }
}

}  // namespace

PipelineTimes run_pipeline(model::Transformer& model, const PpGroup& pp, Schedule schedule, int micro_batches,
                           std::int64_t batch, std::int64_t seq, StageWork& work,
                           const std::function<void()>& on_last_backward) {
  check_micro_batches(micro_batches);
  const auto start = Clock::now();
  const int m = micro_batches;
  // 1F1B: stage s keeps at most pp - s micro-batches in flight; GPipe all of them.
  const int warmup = schedule == Schedule::GPipe ? m : std::min(pp.size - 1 - pp.rank, m);
  const int slots = schedule == Schedule::GPipe ? m : std::min(warmup + 1, m);
  StageRunner stage(model, pp, batch, seq, work, pp.last() ? 1 : slots);
  auto backward = [&](int micro) {
    if (micro == m - 1 && on_last_backward) on_last_backward();
    stage.backward(micro);
  };
  if (pp.last()) {
    // The last stage turns each forward straight into its backward under both schedules
    // (the head's backward runs inside forward, hence the early call of on_last_backward).
    for (int i = 0; i < m; ++i) {
      if (i == m - 1 && on_last_backward) on_last_backward();
      stage.forward(i, true);
      stage.backward(i);
    }
    return stage.finish(start, m);
  }
  int next_forward = 0, next_backward = 0;
  for (; next_forward < warmup; ++next_forward) stage.forward(next_forward, true);
  while (next_forward < m) {
    stage.forward(next_forward++, true);
    backward(next_backward++);
  }
  while (next_backward < m) backward(next_backward++);
  return stage.finish(start, m);
}

PipelineTimes run_pipeline_forward(model::Transformer& model, const PpGroup& pp, int micro_batches,
                                   std::int64_t batch, std::int64_t seq, StageWork& work) {
  check_micro_batches(micro_batches);
  const auto start = Clock::now();
  // No backward frees a slot, so the sends of earlier micro-batches are simply waited for
  // when their slot comes round again (two slots: one computing, one sending).
  StageRunner stage(model, pp, batch, seq, work, 2);
  for (int i = 0; i < micro_batches; ++i) stage.forward(i, false);
  return stage.finish(start, micro_batches);
}

}  // namespace loom::parallel
