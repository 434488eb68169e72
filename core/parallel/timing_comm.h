// TimingComm: a Comm that forwards every call to another Comm and adds up the seconds spent
// in it, so a trainer or benchmark can report how much of a step is communication (per
// group: tp, dp, pp). Nonblocking calls count the time to post them plus the time their
// Request's wait() blocks. It can also mark each call as the rank's current activity
// ("dp all_reduce") for a hang watchdog (launch/watchdog.h), which then names the collective
// a stuck rank is in.
//
// Ownership: borrows the inner Comm, which must outlive it, and the ActivityMarker.
// Threads: as the inner Comm.
#pragma once

#include <memory>
#include <string_view>

#include "core/comm.h"

namespace loom::parallel {

// Told when each call starts and ends. core/ knows no watchdog, so this is the whole hook.
// Labels are string literals, valid for the whole program; begin/end come from the thread
// that calls the Comm, must be cheap (the watchdog does an atomic store) and never throw.
// Calls nest: end() returns to whatever was marked before the matching begin().
class ActivityMarker {
 public:
  virtual void begin(const char* label) noexcept = 0;
  virtual void end() noexcept = 0;

 protected:
  ~ActivityMarker() = default;
};

class TimingComm final : public Comm {
 public:
  explicit TimingComm(Comm& inner) : inner_(inner), seconds_(std::make_shared<double>(0.0)) {}

  double seconds() const { return *seconds_; }
  void reset() { *seconds_ = 0.0; }
  // From now on every call (and every Request's wait) is marked on `marker` as
  // "<group> <call>": "dp all_reduce", "pp recv", ... `group` is "tp", "dp", "pp" or
  // "world" (std::invalid_argument otherwise); a null marker stops the marking. The marker
  // must outlive this TimingComm and the Requests it returns.
  void mark_activity(ActivityMarker* marker, std::string_view group);

  int size() const override { return inner_.size(); }
  int rank() const override { return inner_.rank(); }
  void barrier() override;
  void all_reduce_sum(Tensor& tensor) override;
  void all_reduce_host(std::span<double> values, ReduceOp op) override;
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  void broadcast(Tensor& tensor, int root) override;
  void send(const Tensor& tensor, int peer, int tag) override;
  void recv(Tensor& tensor, int peer, int tag) override;
  Request all_reduce_sum_async(Tensor& tensor) override;
  Request reduce_scatter_sum_async(const Tensor& in, Tensor& out) override;
  Request all_gather_async(const Tensor& in, Tensor& out) override;
  Request broadcast_async(Tensor& tensor, int root) override;
  Request send_async(const Tensor& tensor, int peer, int tag) override;
  Request recv_async(Tensor& tensor, int peer, int tag) override;

 private:
  Comm& inner_;
  std::shared_ptr<double> seconds_;  // shared with the Requests, which may outlive a call
  ActivityMarker* marker_ = nullptr;
  const char* const* labels_ = nullptr;  // one static label per call, for this group
};

}  // namespace loom::parallel
