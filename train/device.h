// Where a trainer computes: the train.device setting (cpu, the default, or cuda) and the
// Backend it selects. Every trainer (sft, rm, dpo, ppo, grpo) builds its backend here, so
// the choice, the device-per-rank rule and the start-up line live in one place.
//
// cuda: each rank takes GPU local_rank % (visible devices) (launch/cuda_device.h) and prints
// once "loom-sft: rank 0 on GPU 0: <device description>" on stderr. A build without CUDA
// refuses train.device=cuda with a config::ConfigError that says so.
//
// Ownership: the returned backend is the caller's; it must outlive every tensor, model and
// engine made with it. Threads: call from the thread that will drive the backend (CUDA's
// current device is per thread). Ranks: local, no communication.
#pragma once

#include <memory>
#include <string>

#include "core/backend.h"
#include "io/config/config.h"
#include "io/config/schema.h"

namespace loom::train {

// train.device and train.precision (registered by add_train_settings).
void add_device_setting(config::Schema& schema);

// train.precision as a compute dtype: f32, or bf16 (mixed precision over f32 masters).
DType precision_from(const config::Config& config);

// True when this loom was built with the CUDA backend (LOOM_HAVE_CUDA).
bool built_with_cuda();

// The backend train.device selects; `program` prefixes the start-up line ("loom-sft").
// Throws config::ConfigError for train.device=cuda in a build without CUDA, and
// std::runtime_error when CUDA finds no usable device.
std::unique_ptr<Backend> make_backend(const config::Config& config, const std::string& program);

}  // namespace loom::train
