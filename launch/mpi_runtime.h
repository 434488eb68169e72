// MPI for the lifetime of one object: MpiRuntime initialises MPI (MPI_THREAD_FUNNELED:
// only the main thread calls MPI) and finalises it in its destructor. If MPI was already
// initialised by someone else, it leaves finalisation to them. It also switches
// MPI_COMM_WORLD to MPI_ERRORS_RETURN so that failures reach MPI_CHECK and become
// exceptions with a message instead of an abort with a bare error code; communicators
// split from it inherit that handler.
//
// MPI_CHECK(call) throws std::runtime_error naming the call, file:line, MPI's error string
// and a hint of what to try.
//
// Ownership: create exactly one MpiRuntime in main(), before any ProcessGroups, and let it
// outlive them (ProcessGroups skips freeing communicators once MPI is finalised).
// Threads: construct and destroy on the main thread.
#pragma once

#include <mpi.h>

#include "launch/environment.h"

namespace loom::launch {

namespace detail {
[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);
}

#define MPI_CHECK(call)                                                              \
  do {                                                                               \
    int mpi_check_code_ = (call);                                                    \
    if (mpi_check_code_ != MPI_SUCCESS)                                              \
      ::loom::launch::detail::throw_mpi_error(mpi_check_code_, #call, __FILE__, __LINE__); \
  } while (0)

class MpiRuntime {
 public:
  // argc/argv may be null. Throws std::runtime_error when MPI cannot give
  // MPI_THREAD_FUNNELED, or when the launcher's environment disagrees with MPI about the
  // world (the binary is linked against a different MPI than the one that launched it).
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int world_rank() const { return environment_.world_rank; }
  int world_size() const { return environment_.world_size; }
  // The launcher's view, with world rank and size (and unknown counts) filled from MPI.
  const RankEnvironment& environment() const { return environment_; }

  // Ends the program with `code` in a way that cannot hang: with one rank, MPI_Finalize and
  // exit; with several, MPI_Abort, because a rank that failed alone (a bad file, a runtime
  // error) would otherwise wait in MPI_Finalize for ranks blocked in a collective it will
  // never join. Errors every rank detects alike (bad settings) should return normally
  // instead, so each rank exits with its own status.
  [[noreturn]] void exit_after_failure(int code);

 private:
  bool owns_mpi_ = false;
  RankEnvironment environment_;
};

// True between MPI_Init and MPI_Finalize.
bool mpi_active();

}  // namespace loom::launch
