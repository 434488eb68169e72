// Graceful stop on SIGINT / SIGTERM / SIGUSR1: the handler only records the signal; the
// training loop polls stop_requested() at each step boundary, finishes the step, saves
// what it has and exits with 128 + the signal number, so nothing trained is lost to a
// Ctrl-C or a scheduler's kill warning. A second SIGINT while stopping restores the
// default action (kills at once) for a user who really wants out.
//
// Threads: install once from the main thread; stop_requested() is safe from any thread
// (a lock-free atomic). Ranks: per process; agreeing across ranks is the caller's job.
#pragma once

namespace loom::launch {

// Installs the handlers for SIGINT, SIGTERM and SIGUSR1 (idempotent).
void install_stop_handlers();

// The signal that asked for a stop, or 0 when none has.
int stop_requested();

// "SIGTERM" etc., for messages.
const char* signal_name(int signo);

}  // namespace loom::launch
