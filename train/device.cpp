#include "train/device.h"

#include <iostream>
#include <stdexcept>

#include "launch/environment.h"

#if LOOM_HAVE_CUDA
#include "core/kernels/cuda/cuda_backend.h"
#endif
#if LOOM_HAVE_NCCL
#include "launch/cuda_device.h"
#endif

namespace loom::train {

void add_device_setting(config::Schema& schema) {
  schema.add_enum("train.device", std::string("cpu"), {"cpu", "cuda"},
                  "Where the model trains: cpu, or cuda (rank r on GPU local_rank % GPUs; needs a CUDA build, "
                  "see docs/cuda.md)");
  schema.add_enum("train.precision", std::string("f32"), {"f32", "bf16"},
                  "f32, or bf16: bf16 weights, activations and gradients over f32 master weights and AdamW state "
                  "(checkpoints keep the f32 masters). For GPUs; the CPU emulates bf16 storage, slowly");
}

DType precision_from(const config::Config& config) {
  const std::string precision = config.get_string("train.precision");
  if (precision == "f32") return DType::F32;
  if (precision == "bf16") return DType::BF16;
  throw config::ConfigError("train.precision: expected f32 or bf16, got '" + precision + "'");
}

bool built_with_cuda() {
#if LOOM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

namespace {

#if LOOM_HAVE_CUDA
std::unique_ptr<Backend> make_gpu_backend(const std::string& program) {
  const launch::RankEnvironment env = launch::read_rank_environment();
#if LOOM_HAVE_NCCL
  const int device = launch::select_cuda_device(env);
  const std::string description = launch::describe_cuda_device(device);
#else
  // A CUDA build without NCCL: the same local_rank % count rule, without the device report.
  const int count = cuda::device_count();
  if (count == 0) {
    throw std::runtime_error("train.device=cuda: rank " + std::to_string(env.world_rank) +
                             " sees no usable GPU: " + cuda::unavailable_reason());
  }
  const int device = env.local_rank % count;
  const std::string description = "CUDA device " + std::to_string(device);
#endif
  auto backend = cuda::make_cuda_backend(device);
  std::cerr << program << ": rank " << env.world_rank << " on GPU " << device << ": " << description << "\n";
  return backend;
}
#endif

}  // namespace

std::unique_ptr<Backend> make_backend(const config::Config& config, const std::string& program) {
  const std::string device = config.get_string("train.device");
  if (device == "cpu") return make_cpu_backend();
  if (device != "cuda") {
    throw config::ConfigError("train.device: expected cpu or cuda, got '" + device + "'");
  }
#if LOOM_HAVE_CUDA
  return make_gpu_backend(program);
#else
  (void)program;
  throw config::ConfigError(
      "train.device=cuda: this loom was built without CUDA (CMake found no CUDA toolkit; see docs/cuda.md)");
#endif
}

}  // namespace loom::train
