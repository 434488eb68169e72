#include "core/parallel/timing_comm.h"

#include <chrono>
#include <utility>

namespace loom::parallel {
namespace {

using Clock = std::chrono::steady_clock;

class Stopwatch {
 public:
  explicit Stopwatch(double& total) : total_(total), start_(Clock::now()) {}
  ~Stopwatch() { total_ += std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  double& total_;
  Clock::time_point start_;
};

// Times the wait of the wrapped transfer.
class TimedPending final : public PendingTransfer {
 public:
  TimedPending(Request inner, std::shared_ptr<double> seconds) : inner_(std::move(inner)), seconds_(std::move(seconds)) {}
  void wait() override {
    Stopwatch watch(*seconds_);
    inner_.wait();
  }
  bool test() override { return inner_.done(); }

 private:
  Request inner_;
  std::shared_ptr<double> seconds_;
};

template <typename Fn>
auto timed(double& total, Fn&& fn) {
  Stopwatch watch(total);
  return fn();
}

Request wrap(Request inner, const std::shared_ptr<double>& seconds) {
  return Request(std::make_unique<TimedPending>(std::move(inner), seconds));
}

}  // namespace

void TimingComm::barrier() { timed(*seconds_, [&] { inner_.barrier(); }); }
void TimingComm::all_reduce_sum(Tensor& t) { timed(*seconds_, [&] { inner_.all_reduce_sum(t); }); }
void TimingComm::all_reduce_host(std::span<double> v, ReduceOp op) {
  timed(*seconds_, [&] { inner_.all_reduce_host(v, op); });
}
void TimingComm::reduce_scatter_sum(const Tensor& in, Tensor& out) {
  timed(*seconds_, [&] { inner_.reduce_scatter_sum(in, out); });
}
void TimingComm::all_gather(const Tensor& in, Tensor& out) { timed(*seconds_, [&] { inner_.all_gather(in, out); }); }
void TimingComm::broadcast(Tensor& t, int root) { timed(*seconds_, [&] { inner_.broadcast(t, root); }); }
void TimingComm::send(const Tensor& t, int peer, int tag) { timed(*seconds_, [&] { inner_.send(t, peer, tag); }); }
void TimingComm::recv(Tensor& t, int peer, int tag) { timed(*seconds_, [&] { inner_.recv(t, peer, tag); }); }
Request TimingComm::all_reduce_sum_async(Tensor& t) {
  return timed(*seconds_, [&] { return wrap(inner_.all_reduce_sum_async(t), seconds_); });
}
Request TimingComm::reduce_scatter_sum_async(const Tensor& in, Tensor& out) {
  return timed(*seconds_, [&] { return wrap(inner_.reduce_scatter_sum_async(in, out), seconds_); });
}
Request TimingComm::all_gather_async(const Tensor& in, Tensor& out) {
  return timed(*seconds_, [&] { return wrap(inner_.all_gather_async(in, out), seconds_); });
}
Request TimingComm::broadcast_async(Tensor& t, int root) {
  return timed(*seconds_, [&] { return wrap(inner_.broadcast_async(t, root), seconds_); });
}
Request TimingComm::send_async(const Tensor& t, int peer, int tag) {
  return timed(*seconds_, [&] { return wrap(inner_.send_async(t, peer, tag), seconds_); });
}
Request TimingComm::recv_async(Tensor& t, int peer, int tag) {
  return timed(*seconds_, [&] { return wrap(inner_.recv_async(t, peer, tag), seconds_); });
}

}  // namespace loom::parallel
