// Graceful stop on SIGINT / SIGTERM / SIGUSR1: the training loop polls stop_requested() at
// each step boundary, finishes the step, checkpoints and exits (75 = requeue for SIGTERM and
// SIGUSR1, 130 for SIGINT; train/run_control.h). A second SIGINT while stopping ends the
// process at once (exit 130) for a user who really wants out.
//
// Why no signal handler. oneDNN's JIT SGEMM kernels (libdnnl 2.6, oneDNN issue #4845) point
// the stack pointer into heap memory while they run; a handler invoked on such a thread
// writes its signal frame into the heap and corrupts it (seen as crashes inside dnnl_sgemm).
// So the three signals are blocked in every thread — block_stop_signals() runs first in
// main(), before MPI, OpenMP or any other thread exists, and threads inherit the mask — and
// one dedicated thread takes them with sigwait().
//
// Threads: block_stop_signals() from main() before any thread starts, then
// install_stop_handlers() once (idempotent); stop_requested() from any thread (a lock-free
// atomic). Ranks: per process; agreeing across ranks is the caller's job.
#pragma once

namespace loom::launch {

// Blocks SIGINT, SIGTERM and SIGUSR1 in the calling thread (and so in every thread it
// starts later); ignores SIGXFSZ so a file-size limit fails a write with EFBIG.
void block_stop_signals();

// Starts the thread that waits for the blocked signals (idempotent). Signals that arrived
// before are taken at once.
void install_stop_handlers();

// The signal that asked for a stop, or 0 when none has.
int stop_requested();

// "SIGTERM" etc., for messages.
const char* signal_name(int signo);

}  // namespace loom::launch
