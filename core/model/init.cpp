#include "core/model/init.h"

#include "core/mix64.h"

#include <cmath>
#include <numbers>
#include <vector>

namespace loom::model {

namespace {

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// A uniform double in (0, 1): 53 random bits, offset by half a step so log() never sees 0.
double uniform_open(std::uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// Box–Muller turns one pair of uniforms into two normals, so global elements 2k and 2k+1
// share pair k (cosine and sine branch). mix64 (SplitMix64's finaliser) is a bijection with full
// avalanche, so hashing key + counter gives independent-looking uniforms for distinct
// counters of one key (the Philox "counter-based" idea with a cheaper mixer).
struct NormalPair {
  float even, odd;
};

NormalPair normal_pair(std::uint64_t key, std::int64_t pair) {
  const std::uint64_t counter = static_cast<std::uint64_t>(pair) * 2;
  const double u1 = uniform_open(mix64(key + counter));
  const double u2 = uniform_open(mix64(key + counter + 1));
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * std::numbers::pi * u2;
  return NormalPair{static_cast<float>(radius * std::cos(angle)), static_cast<float>(radius * std::sin(angle))};
}

float normal_from_key(std::uint64_t key, std::int64_t index) {
  const NormalPair p = normal_pair(key, index / 2);
  return index % 2 == 0 ? p.even : p.odd;
}

std::uint64_t parameter_key(std::uint64_t seed, const std::string& name) {
  return mix64(mix64(seed) ^ fnv1a(name));
}

}  // namespace

float init_normal_sample(std::uint64_t seed, const std::string& name, std::int64_t global_index) {
  return normal_from_key(parameter_key(seed, name), global_index);
}

void init_parameters(ParameterSet& params, std::uint64_t seed, int tp_rank, int tp_size, Backend& backend) {
  std::vector<float> staging;
  for (const ParameterEntry& e : params.entries()) {
    Tensor value = params.value(e);
    if (e.init != InitKind::Normal) {
      backend.fill(value, e.init == InitKind::Ones ? 1.0f : 0.0f);
      continue;
    }
    // Generated on the host (cheap next to training) and copied in, so the same code
    // serves every backend.
    staging.resize(static_cast<std::size_t>(e.numel));
    const std::uint64_t key = parameter_key(seed, e.name);
    const std::int64_t pairs = (e.numel + 1) / 2;
    float* out = staging.data();
#pragma omp parallel for schedule(static)
    for (std::int64_t j = 0; j < pairs; ++j) {
      // Local neighbours are almost always global neighbours (slices cut whole rows or
      // even-sized column blocks): then one Box–Muller pair fills both.
      const std::int64_t i = 2 * j;
      const std::int64_t g = global_element_index(e, i, tp_rank, tp_size);
      const bool has_next = i + 1 < e.numel;
      const std::int64_t g_next = has_next ? global_element_index(e, i + 1, tp_rank, tp_size) : -1;
      if (has_next && g % 2 == 0 && g_next == g + 1) {
        const NormalPair p = normal_pair(key, g / 2);
        out[i] = e.init_std * p.even;
        out[i + 1] = e.init_std * p.odd;
      } else {
        out[i] = e.init_std * normal_from_key(key, g);
        if (has_next) out[i + 1] = e.init_std * normal_from_key(key, g_next);
      }
    }
    backend.copy(Tensor::wrap(staging.data(), e.shape, DType::F32, Device::CPU), value);
  }
  params.refresh_compute_values(backend);
}

}  // namespace loom::model
