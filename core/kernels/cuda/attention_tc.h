// Tensor-core causal attention for bf16 storage (FlashAttention-2 style), the fast path
// behind CudaBackend::attention_forward / attention_backward for head_dim 64 and 128. The
// SIMT kernels of attention.cu stay the path for f32 and every other head_dim, and the
// reference these kernels are tested against is the CPU backend (core/kernels/cpu/attention.cpp).
//
// Contract (the same as Backend::attention_forward / attention_backward, core/backend.h):
// qkv packs [B, T, (Hq + 2 Hkv) D] bf16, query head h attends with kv head h / (Hq / Hkv),
// causal, softmax scale 1/sqrt(D). Forward OVERWRITES out [B, T, Hq D] bf16 and lse
// [B, Hq, T] f32 (natural-log log-sum-exp of each row's scaled scores). Backward ADDS INTO
// dqkv (bf16, qkv's packing), reading dout, out and lse; each gradient element is summed in
// f32 and rounded to bf16 once when added. Every pointer is device memory, 16-byte aligned
// (the caching allocator's blocks are); the functions throw std::invalid_argument otherwise,
// or when tensor_core_attention(BF16, shape) is false.
//
// Ownership: nothing is allocated here; backward's `scratch` is the caller's, at least
// attention_backward_tc_scratch(shape) f32 elements, and only used during the call's kernels.
// Threads: everything is enqueued on `stream` without host synchronisation; the first call
// of each kernel per device sets its dynamic shared-memory limit (thread-safe). Results are
// bit-identical run to run: fixed tile orders, no floating-point atomics.
// Included only by .cu files of loom_cuda and by GPU tests and benchmarks (it includes
// cuda_runtime.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/backend.h"
#include "core/tensor.h"

namespace loom::cuda::detail {

// true for bf16 with head_dim 64 or 128 (the tensor-core kernels' shapes) and a geometry the
// grid can hold; otherwise use the SIMT kernels of attention.cu.
bool tensor_core_attention(DType dtype, const AttentionShape& shape);

void attention_forward_tc(const __nv_bfloat16* qkv, const AttentionShape& shape, __nv_bfloat16* out, float* lse,
                          cudaStream_t stream);

void attention_backward_tc(const __nv_bfloat16* dout, const __nv_bfloat16* qkv, const __nv_bfloat16* out,
                           const float* lse, const AttentionShape& shape, __nv_bfloat16* dqkv, float* scratch,
                           cudaStream_t stream);

// f32 elements backward's scratch needs: one delta = dout·out per query row (B·Hq·T).
std::int64_t attention_backward_tc_scratch(const AttentionShape& shape);

}  // namespace loom::cuda::detail
