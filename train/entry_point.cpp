#include "train/entry_point.h"

#include <optional>

#include "launch/mpi_runtime.h"
#include "launch/stop_signal.h"

namespace loom::train {

int trainer_main(int argc, char** argv, const config::Schema& schema, const config::ProgramInfo& info,
                 const std::function<int(const config::Config&)>& run) {
  // Before any thread exists, so that every thread inherits the mask.
  launch::block_stop_signals();
  launch::install_stop_handlers();
  std::optional<launch::MpiRuntime> mpi;
  const int code = config::run_main(argc, argv, schema, info, [&](const config::CommandLine& cli) {
    mpi.emplace(&argc, &argv);
    return run(cli.config);
  });
  // Finalised after run_main has printed any error: MPI_Finalize waits for every rank, so
  // mpirun cannot abort rank 0 (on another rank's failing exit) before its message is out.
  // A runtime failure (exit 1) may have hit this rank alone while the others wait in a
  // collective: abort the job rather than hang in MPI_Finalize.
  if (code == 1 && mpi) mpi->exit_after_failure(code);
  mpi.reset();
  return code;
}

}  // namespace loom::train
