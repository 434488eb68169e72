// mix64: a well-mixed 64-bit function of one 64-bit input (SplitMix64's finaliser, a
// bijection). loom's randomness is counter-based — weight init, data order, hash splits,
// the sampler — so the same (seed, counter) always gives the same number on any rank,
// layout or batch order. Pure; safe from any thread.
#pragma once

#include <cstdint>

namespace loom {

constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace loom
