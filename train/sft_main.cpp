// loom-sft: pre-training on raw text and supervised fine-tuning (see train/sft.h).
#include "io/config/command_line.h"
#include "launch/mpi_runtime.h"
#include "launch/stop_signal.h"
#include "train/sft.h"

#include <optional>

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask (launch/stop_signal.h).
  loom::launch::block_stop_signals();
  loom::launch::install_stop_handlers();
  const loom::config::Schema schema = loom::train::sft_schema();
  const loom::config::ProgramInfo info{
      "loom-sft",
      "Pre-train on raw text (loss on every token) or fine-tune on prompt/completion data (loss on completions)",
      {"loom-sft --config configs/tiny-brown.yaml",
       "loom-sft --config configs/tiny-brown.yaml run_dir=runs/smoke train.max_steps=30",
       "loom-sft --config configs/tiny-wordnet-sft.yaml --print-config"}};
  // Started only for a real run (not --help); without mpirun, MPI starts as a singleton
  // world of one rank.
  std::optional<loom::launch::MpiRuntime> mpi;
  const int code = loom::config::run_main(argc, argv, schema, info, [&](const loom::config::CommandLine& cli) {
    mpi.emplace(&argc, &argv);
    return loom::train::run_sft(cli.config);
  });
  // Finalised after run_main has printed any error: MPI_Finalize waits for every rank, so
  // mpirun cannot abort rank 0 (on another rank's failing exit) before its message is out.
  // A runtime failure (exit 1) may have hit this rank alone while the others wait in a
  // collective: abort the job rather than hang in MPI_Finalize.
  if (code == 1 && mpi) mpi->exit_after_failure(code);
  mpi.reset();
  return code;
}
