#include "launch/stop_signal.h"

#include <atomic>
#include <csignal>

namespace loom::launch {
namespace {

std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free atomic");

extern "C" void record_stop_signal(int signo) {
  if (signo == SIGINT && g_stop_signal.load() == SIGINT) std::signal(SIGINT, SIG_DFL);
  g_stop_signal.store(signo);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signo : {SIGINT, SIGTERM, SIGUSR1}) sigaction(signo, &action, nullptr);
  // A file-size limit (ulimit -f) then fails the write with EFBIG, which the checkpoint
  // writer reports like a full disk, instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
}

int stop_requested() { return g_stop_signal.load(); }

const char* signal_name(int signo) {
  switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal";
  }
}

}  // namespace loom::launch
