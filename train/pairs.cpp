#include "train/pairs.h"

#include <algorithm>
#include <sstream>

namespace loom::train {

io::LoaderOptions pair_loader_options(const config::Config& config, const Engine& engine, const BatchShape& shape,
                                      std::int32_t pad_id) {
  io::LoaderOptions options;
  options.seq_len = config.get_int("data.seq_len");
  options.global_batch = shape.global_rows;
  options.seed = static_cast<std::uint64_t>(config.get_int("train.seed"));
  options.pack = false;
  options.group = 2;
  options.shuffle = config.get_bool("data.shuffle");
  options.pad_id = pad_id;
  options.dp_rank = engine.dp_rank();
  options.dp_size = engine.dp_size();
  return options;
}

std::string describe_pairs(const TrainerInputs& inputs, const BatchShape& shape, std::int64_t steps,
                           const config::Config& config) {
  std::ostringstream line;
  line << inputs.train->n_documents() / 2 << " training pairs, batch " << shape.global_rows / 2 << " pairs x "
       << config.get_int("data.seq_len") << " tokens, micro-batch " << shape.micro_rows / 2 << " pairs, " << steps
       << " steps, " << inputs.threads << " threads";
  return line.str();
}

std::vector<std::int64_t> last_token_positions(const Tensor& targets) {
  const std::int64_t rows = targets.dim(0), T = targets.dim(1);
  const std::int32_t* t = targets.data<std::int32_t>();
  std::vector<std::int64_t> positions(static_cast<std::size_t>(rows), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t last = -1;
    for (std::int64_t j = 0; j < T; ++j) {
      if (t[r * T + j] >= 0) last = j;
    }
    positions[static_cast<std::size_t>(r)] = std::min(last + 1, T - 1);
  }
  return positions;
}

void sum_over_targets(const Tensor& targets, std::int64_t row0, std::int64_t rows, std::span<const float> per_token,
                      std::span<float> sums, std::span<int> counts) {
  const std::int64_t T = targets.dim(1);
  const std::int32_t* t = targets.data<std::int32_t>() + row0 * T;
  for (std::int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    int count = 0;
    for (std::int64_t j = 0; j < T; ++j) {
      if (t[r * T + j] >= 0) {
        sum += per_token[static_cast<std::size_t>(r * T + j)];
        ++count;
      }
    }
    sums[static_cast<std::size_t>(r)] = static_cast<float>(sum);
    counts[static_cast<std::size_t>(r)] = count;
  }
}

}  // namespace loom::train
