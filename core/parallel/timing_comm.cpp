#include "core/parallel/timing_comm.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>

namespace loom::parallel {
namespace {

using Clock = std::chrono::steady_clock;

// Index into a group's label row; the order matches LOOM_CALL_LABELS.
enum Call { kBarrier, kAllReduce, kAllReduceHost, kReduceScatter, kAllGather, kBroadcast, kSend, kRecv, kCalls };

// Literals, so a watchdog thread may read a label long after the call that set it returned.
#define LOOM_CALL_LABELS(group)                                                                                    \
  {                                                                                                                \
    group " barrier", group " all_reduce", group " all_reduce_host", group " reduce_scatter", group " all_gather", \
        group " broadcast", group " send", group " recv"                                                           \
  }
constexpr const char* kGroupNames[] = {"tp", "dp", "pp", "world"};
constexpr const char* kLabels[][kCalls] = {LOOM_CALL_LABELS("tp"), LOOM_CALL_LABELS("dp"), LOOM_CALL_LABELS("pp"),
                                           LOOM_CALL_LABELS("world")};
#undef LOOM_CALL_LABELS

// Times a call into `total` and, when a marker is set, marks it as the current activity.
class Stopwatch {
 public:
  Stopwatch(double& total, ActivityMarker* marker, const char* label)
      : total_(total), marker_(marker), start_(Clock::now()) {
    if (marker_) marker_->begin(label);
  }
  ~Stopwatch() {
    if (marker_) marker_->end();
    total_ += std::chrono::duration<double>(Clock::now() - start_).count();
  }

 private:
  double& total_;
  ActivityMarker* marker_;
  Clock::time_point start_;
};

// Times (and marks) the wait of the wrapped transfer.
class TimedPending final : public PendingTransfer {
 public:
  TimedPending(Request inner, std::shared_ptr<double> seconds, ActivityMarker* marker, const char* label)
      : inner_(std::move(inner)), seconds_(std::move(seconds)), marker_(marker), label_(label) {}
  void wait() override {
    Stopwatch watch(*seconds_, marker_, label_);
    inner_.wait();
  }
  bool test() override { return inner_.done(); }

 private:
  Request inner_;
  std::shared_ptr<double> seconds_;
  ActivityMarker* marker_;
  const char* label_;
};

template <typename Fn>
auto timed(double& total, ActivityMarker* marker, const char* label, Fn&& fn) {
  Stopwatch watch(total, marker, label);
  return fn();
}

Request wrap(Request inner, const std::shared_ptr<double>& seconds, ActivityMarker* marker, const char* label) {
  return Request(std::make_unique<TimedPending>(std::move(inner), seconds, marker, label));
}

const char* label_of(const char* const* labels, Call call) { return labels ? labels[call] : nullptr; }

}  // namespace

void TimingComm::mark_activity(ActivityMarker* marker, std::string_view group) {
  for (std::size_t g = 0; g < std::size(kGroupNames); ++g) {
    if (group == kGroupNames[g]) {
      marker_ = marker;
      labels_ = kLabels[g];
      return;
    }
  }
  throw std::invalid_argument("TimingComm::mark_activity: group \"" + std::string(group) +
                              "\" is not one of tp, dp, pp, world");
}

void TimingComm::barrier() {
  timed(*seconds_, marker_, label_of(labels_, kBarrier), [&] { inner_.barrier(); });
}
void TimingComm::all_reduce_sum(Tensor& t) {
  timed(*seconds_, marker_, label_of(labels_, kAllReduce), [&] { inner_.all_reduce_sum(t); });
}
void TimingComm::all_reduce_host(std::span<double> v, ReduceOp op) {
  timed(*seconds_, marker_, label_of(labels_, kAllReduceHost), [&] { inner_.all_reduce_host(v, op); });
}
void TimingComm::reduce_scatter_sum(const Tensor& in, Tensor& out) {
  timed(*seconds_, marker_, label_of(labels_, kReduceScatter), [&] { inner_.reduce_scatter_sum(in, out); });
}
void TimingComm::all_gather(const Tensor& in, Tensor& out) {
  timed(*seconds_, marker_, label_of(labels_, kAllGather), [&] { inner_.all_gather(in, out); });
}
void TimingComm::broadcast(Tensor& t, int root) {
  timed(*seconds_, marker_, label_of(labels_, kBroadcast), [&] { inner_.broadcast(t, root); });
}
void TimingComm::send(const Tensor& t, int peer, int tag) {
  timed(*seconds_, marker_, label_of(labels_, kSend), [&] { inner_.send(t, peer, tag); });
}
void TimingComm::recv(Tensor& t, int peer, int tag) {
  timed(*seconds_, marker_, label_of(labels_, kRecv), [&] { inner_.recv(t, peer, tag); });
}
Request TimingComm::all_reduce_sum_async(Tensor& t) {
  const char* label = label_of(labels_, kAllReduce);
  return timed(*seconds_, marker_, label,
               [&] { return wrap(inner_.all_reduce_sum_async(t), seconds_, marker_, label); });
}
Request TimingComm::reduce_scatter_sum_async(const Tensor& in, Tensor& out) {
  const char* label = label_of(labels_, kReduceScatter);
  return timed(*seconds_, marker_, label,
               [&] { return wrap(inner_.reduce_scatter_sum_async(in, out), seconds_, marker_, label); });
}
Request TimingComm::all_gather_async(const Tensor& in, Tensor& out) {
  const char* label = label_of(labels_, kAllGather);
  return timed(*seconds_, marker_, label,
               [&] { return wrap(inner_.all_gather_async(in, out), seconds_, marker_, label); });
}
Request TimingComm::broadcast_async(Tensor& t, int root) {
  const char* label = label_of(labels_, kBroadcast);
  return timed(*seconds_, marker_, label,
               [&] { return wrap(inner_.broadcast_async(t, root), seconds_, marker_, label); });
}
Request TimingComm::send_async(const Tensor& t, int peer, int tag) {
  const char* label = label_of(labels_, kSend);
  return timed(*seconds_, marker_, label,
               [&] { return wrap(inner_.send_async(t, peer, tag), seconds_, marker_, label); });
}
Request TimingComm::recv_async(Tensor& t, int peer, int tag) {
  const char* label = label_of(labels_, kRecv);
  return timed(*seconds_, marker_, label,
               [&] { return wrap(inner_.recv_async(t, peer, tag), seconds_, marker_, label); });
}

}  // namespace loom::parallel
