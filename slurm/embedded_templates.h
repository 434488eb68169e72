// The sbatch templates of slurm/templates/, compiled into loom-submit so that it renders the
// same scripts from any directory. The definition is generated at configure time
// (slurm/CMakeLists.txt writes embedded_templates.cpp in the build tree); editing a template
// re-runs CMake and rebuilds it.
//
// Thread safety: immutable after static initialisation.
#pragma once

#include <string_view>
#include <vector>

namespace loom::slurm {

struct EmbeddedTemplate {
  const char* name;       // "train", "eval", "eval-array", "eval-gate", "quantize"
  std::string_view text;  // the file's contents
};

const std::vector<EmbeddedTemplate>& embedded_templates();

}  // namespace loom::slurm
