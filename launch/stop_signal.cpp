#include "launch/stop_signal.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace loom::launch {
namespace {

std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "stop_requested() is read from any thread");

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int signo : {SIGINT, SIGTERM, SIGUSR1}) sigaddset(&set, signo);
  return set;
}

void wait_for_signals() {
  const sigset_t set = stop_set();
  for (;;) {
    int signo = 0;
    if (sigwait(&set, &signo) != 0) continue;
    if (signo == SIGINT && g_stop_signal.load() == SIGINT) {
      const char message[] = "\nloom: second SIGINT: exiting now\n";
      [[maybe_unused]] const ssize_t ignored = ::write(2, message, sizeof message - 1);
      std::_Exit(130);
    }
    g_stop_signal.store(signo);
  }
}

}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGXFSZ, SIG_IGN);
}

void install_stop_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    block_stop_signals();  // in case main() did not (the waiting thread must not race a handler)
    std::thread(wait_for_signals).detach();
  });
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
