// The logits a whole loom model gives one token sequence, on the CPU backend (the fp32
// reference), and the HDF5 file `loom-ckpt logits` writes them to:
//
//   /logits  f32 [T, V]   row t: the scores for the token after tokens[0..t]
//   /tokens  i32 [T]
//   attributes on /: source (the model file), format "loom-logits"
//
// This is how an exported or imported model is checked against another implementation
// (tests/reference/test_hf_parity.py compares it with an independent PyTorch forward).
//
// Threads: one thread (the CPU backend uses OpenMP inside). No MPI.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/hf/loom_model_file.h"

namespace loom::io::hf {

// "1, 2,3" → {1, 2, 3}. Throws std::invalid_argument naming the position of a bad entry.
std::vector<std::int32_t> parse_token_list(const std::string& text);

// Logits [T, V] f32. Throws std::invalid_argument when a token is outside [0, vocab_size)
// or there are more tokens than max_seq_len.
Tensor compute_logits(const LoomModel& model, std::span<const std::int32_t> tokens);

// Writes the file above atomically ("<file>.tmp", then rename).
void write_logits_file(const std::filesystem::path& file, const Tensor& logits, std::span<const std::int32_t> tokens,
                       const std::string& source);

}  // namespace loom::io::hf
