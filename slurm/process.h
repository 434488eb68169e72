// Running a Slurm client (sbatch, squeue, scontrol) without a shell: the arguments go to
// execvp as they are, so nothing in them is ever interpreted; stdout and stderr are captured.
//
// Thread safety: reentrant; it forks, so call it from one thread at a time in a threaded
// program.
#pragma once

#include <string>
#include <vector>

namespace loom::slurm {

struct ProcessResult {
  int status = 0;    // the exit code; 128 + N when killed by signal N; 127 when it could not start
  std::string out;   // everything it wrote to stdout
  std::string err;   // everything it wrote to stderr (or why it could not start)
};

// Runs argv[0] (searched on PATH unless it holds a '/') with stdin from /dev/null.
ProcessResult run_process(const std::vector<std::string>& argv);

}  // namespace loom::slurm
