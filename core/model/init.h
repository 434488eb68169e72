// Layout-independent weight initialisation.
//
// Every element's initial value is a pure function of (seed, parameter name, element index
// in the GLOBAL tensor): a counter-based generator (splitmix64 finaliser over a keyed
// counter, Box–Muller for normals) instead of a sequential stream. A model split over any
// tp × pp layout therefore starts from exactly the weights the unsplit model would, which
// is what makes runs comparable across layouts and lets a checkpoint written by one layout
// equal a fresh init of another.
//
// Threads: pure functions plus writes into the given ParameterSet; one thread per set.
#pragma once

#include <cstdint>
#include <string>

#include "core/backend.h"
#include "core/model/parameter_set.h"

namespace loom::model {

// A standard-normal sample for element `global_index` of parameter `name` under `seed`.
float init_normal_sample(std::uint64_t seed, const std::string& name, std::int64_t global_index);

// Fills every parameter by its InitKind: Normal(0, init_std) through init_normal_sample,
// zeros, or ones. tp_rank/tp_size say which slice of each global tensor the set holds.
void init_parameters(ParameterSet& params, std::uint64_t seed, int tp_rank, int tp_size, Backend& backend);

}  // namespace loom::model
