// The main() of every trainer executable: stop signals blocked before any thread exists
// (launch/stop_signal.h), the command line (--config, key=value overrides, --help), MPI
// started only for a real run (a singleton world without mpirun), and MPI finalised after
// any error has been printed — or the job aborted when this rank alone failed, so the
// others do not hang in a collective.
#pragma once

#include <functional>

#include "io/config/command_line.h"

namespace loom::train {

// Returns the process exit code.
int trainer_main(int argc, char** argv, const config::Schema& schema, const config::ProgramInfo& info,
                 const std::function<int(const config::Config&)>& run);

}  // namespace loom::train
