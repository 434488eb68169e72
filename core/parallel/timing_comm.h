// TimingComm: a Comm that forwards every call to another Comm and adds up the seconds spent
// in it, so a trainer or benchmark can report how much of a step is communication (per
// group: tp, dp, pp). Nonblocking calls count the time to post them plus the time their
// Request's wait() blocks.
//
// Ownership: borrows the inner Comm, which must outlive it. Threads: as the inner Comm.
#pragma once

#include <memory>

#include "core/comm.h"

namespace loom::parallel {

class TimingComm final : public Comm {
 public:
  explicit TimingComm(Comm& inner) : inner_(inner), seconds_(std::make_shared<double>(0.0)) {}

  double seconds() const { return *seconds_; }
  void reset() { *seconds_ = 0.0; }

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
};

}  // namespace loom::parallel
