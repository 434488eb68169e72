// Tensor parallelism of the transformer under mpirun (-np 2 and 4, tp = world size): every
// rank runs the whole model (the single-process reference) and its tp shard on the same
// batch, then compares the loss and every element of its gradient slice with the whole
// model's gradient at the element's global index (parameter_layout's global_element_index).
// Covers both families, GQA with kv heads split across ranks and with fewer kv heads than
// ranks (replicated, gradients summed by sum_replicated_kv_grads), the vocab-parallel
// embedding and cross-entropy (tied and untied head) and the scalar head.
// Tolerance: the shard sums the same products in a different order (GEMMs over C/tp, the
// all-reduce over ranks), so values agree to f32 rounding: loss 1e-5 relative, gradients
// 1e-5 of the tensor's largest gradient plus 1e-7.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/model/transformer.h"
#include "launch/mpi_comm.h"
#include "launch/mpi_runtime.h"
#include "launch/process_groups.h"

using namespace loom;

namespace {

int g_failed = 0, g_checks = 0, g_rank = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failed;
    std::fprintf(stderr, "[rank %d] FAILED: %s\n", g_rank, what.c_str());
  }
}

Tensor random_ids(std::int64_t b, std::int64_t t, std::int64_t vocab, std::uint32_t seed, bool ignore_some) {
  std::mt19937 rng(seed);
  Tensor ids = Tensor::empty({b, t}, DType::I32);
  for (std::int64_t i = 0; i < b * t; ++i) {
    ids.data<std::int32_t>()[i] = static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(vocab));
    if (ignore_some && i % 7 == 3) ids.data<std::int32_t>()[i] = -1;
  }
  return ids;
}

struct Case {
  std::string name;
  model::ModelConfig config;
  model::HeadKind head = model::HeadKind::LM;
};

void run(const Case& c, Comm& tp_comm) {
  auto backend = make_cpu_backend();
  const int tp = tp_comm.size(), rank = tp_comm.rank();
  model::Transformer whole(c.config, model::ShardSpec::whole(c.config), c.head, *backend);
  model::Transformer shard(c.config, model::ShardSpec{0, -1, rank, tp}, c.head, *backend);
  shard.set_tensor_parallel(parallel::TpGroup{&tp_comm, rank, tp});
  whole.init_weights(7);
  shard.init_weights(7);
  whole.zero_grads();
  shard.zero_grads();
  const Tensor ids = random_ids(2, 12, c.config.vocab_size, 11, false);
  const std::string where = c.name + " tp=" + std::to_string(tp);
  if (c.head == model::HeadKind::LM) {
    const Tensor targets = random_ids(2, 12, c.config.vocab_size, 12, true);
    const model::LossSum a = whole.forward_lm(ids, targets);
    const model::LossSum b = shard.forward_lm(ids, targets);
    check(a.count == b.count, where + ": token counts " + std::to_string(a.count) + " vs " + std::to_string(b.count));
    check(std::abs(a.mean() - b.mean()) <= 1e-5 * std::abs(a.mean()),
          where + ": loss " + std::to_string(a.mean()) + " vs " + std::to_string(b.mean()));
    whole.backward_lm(static_cast<float>(1.0 / a.count));
    shard.backward_lm(static_cast<float>(1.0 / b.count));
  } else {
    const Tensor& va = whole.forward_scalar(ids);
    const Tensor& vb = shard.forward_scalar(ids);
    double worst = 0;
    for (std::int64_t i = 0; i < va.numel(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(va.data<float>()[i]) - vb.data<float>()[i]));
    }
    check(worst <= 1e-5, where + ": scalar values differ by " + std::to_string(worst));
    Tensor dvalues = Tensor::empty({2, 12}, DType::F32);
    for (std::int64_t i = 0; i < 24; ++i) dvalues.data<float>()[i] = 0.1f * static_cast<float>(i % 5) - 0.2f;
    whole.backward_scalar(dvalues);
    shard.backward_scalar(dvalues);
  }
  parallel::sum_replicated_kv_grads(shard.tensor_parallel(), *backend, shard.params());

  for (const model::ParameterEntry& e : shard.params().entries()) {
    const Tensor mine = shard.params().grad(e);
    const Tensor ref = whole.params().grad(e.name);
    double scale = 0, worst = 0;
    for (std::int64_t i = 0; i < ref.numel(); ++i) scale = std::max(scale, std::abs(double(ref.data<float>()[i])));
    for (std::int64_t i = 0; i < mine.numel(); ++i) {
      const std::int64_t g = model::global_element_index(e, i, rank, tp);
      worst = std::max(worst, std::abs(double(mine.data<float>()[i]) - ref.data<float>()[g]));
    }
    check(worst <= 1e-5 * scale + 1e-7, where + ": gradient of " + e.name + " differs by " + std::to_string(worst) +
                                            " (largest gradient " + std::to_string(scale) + ")");
    check(scale > 0 || e.name.find("bias") != std::string::npos, where + ": gradient of " + e.name + " is all zero");
  }
}

}  // namespace

int main(int argc, char** argv) {
  launch::MpiRuntime runtime(&argc, &argv);
  const int world = runtime.world_size();
  g_rank = runtime.world_rank();
  const auto groups = launch::ProcessGroups::build(MPI_COMM_WORLD, launch::ParallelLayout{world, 1});
  launch::MpiComm tp_comm(groups, launch::GroupAxis::Tp);

  std::vector<Case> cases;
  auto gpt2 = model::ModelConfig::from_family(model::Family::GPT2, 64, 32, 2, 4, 4, 64, 16);
  cases.push_back({"gpt2 tied", gpt2});
  auto llama = model::ModelConfig::from_family(model::Family::Llama, 64, 32, 2, 4, 2, 48, 16);
  llama.bias = true;  // row-parallel biases are added once, by tp rank 0
  cases.push_back({"llama kv=2 biased", llama});
  auto llama_kv1 = model::ModelConfig::from_family(model::Family::Llama, 64, 32, 2, 4, 1, 48, 16);
  llama_kv1.tie_embeddings = false;
  cases.push_back({"llama kv=1 untied", llama_kv1});
  cases.push_back({"gpt2 scalar head", gpt2, model::HeadKind::Scalar});

  for (const Case& c : cases) {
    try {
      run(c, tp_comm);
    } catch (const std::exception& e) {
      check(false, c.name + " threw: " + e.what());
    }
  }
  int failed = g_failed;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0) std::printf("tensor parallel tp=%d: %d checks per rank, %d failed over all ranks\n", world, g_checks, failed);
  return failed == 0 ? 0 : 1;
}
