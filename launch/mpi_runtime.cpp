#include "launch/mpi_runtime.h"

#include <cstdlib>

#include <stdexcept>
#include <string>

namespace loom::launch {

namespace detail {

namespace {
const char* hint_for(int error_class) {
  switch (error_class) {
    case MPI_ERR_TRUNCATE:
    case MPI_ERR_COUNT:
      return "message sizes disagree between ranks; every rank must pass tensors of the "
             "same shape to a collective, and a recv buffer must hold the whole send";
    case MPI_ERR_COMM:
      return "the communicator is invalid: create the MpiRuntime first and keep the "
             "ProcessGroups it came from alive";
    case MPI_ERR_RANK:
      return "the peer or root rank is outside the communicator; ranks are group-local";
    case MPI_ERR_TYPE:
    case MPI_ERR_OP:
      return "this datatype/operation pair is not supported by MPI";
    default:
      return "check that every rank of the group makes the same collective calls in the "
             "same order, and rerun with `mpirun --mca mpi_abort_print_stack 1` for details";
  }
}
}  // namespace

void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) text[0] = '\0';
  int error_class = code;
  if (MPI_Error_class(code, &error_class) != MPI_SUCCESS) error_class = code;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call +
                           " failed: " + text + " (hint: " + hint_for(error_class) + ")");
}

}  // namespace detail

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  RankEnvironment from_launcher = read_rank_environment();
  int initialized = 0;
  MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = MPI_THREAD_SINGLE;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_mpi_ = true;
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      owns_mpi_ = false;
      throw std::runtime_error("MPI_Init_thread: this MPI gives thread level " +
                               std::to_string(provided) +
                               ", loom needs at least MPI_THREAD_FUNNELED");
    }
  }
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  if (from_launcher.launcher != "single" && from_launcher.world_size > 0 &&
      (from_launcher.world_size != size || from_launcher.world_rank != rank)) {
    std::string message = "launcher (" + from_launcher.launcher + ") says this is rank " +
                          std::to_string(from_launcher.world_rank) + " of " +
                          std::to_string(from_launcher.world_size) +
                          " but MPI_COMM_WORLD says rank " + std::to_string(rank) + " of " +
                          std::to_string(size) +
                          ": the program is probably linked against a different MPI than "
                          "the mpirun/srun that started it (with srun, try --mpi=pmix)";
    if (owns_mpi_) MPI_Finalize();
    owns_mpi_ = false;
    throw std::runtime_error(message);
  }
  environment_ = from_launcher;
  environment_.world_rank = rank;
  environment_.world_size = size;
  if (environment_.launcher == "single" && size > 1) environment_.launcher = "mpi";
}

void MpiRuntime::exit_after_failure(int code) {
  if (environment_.world_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  MPI_Finalize();
  std::exit(code);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && !finalized) MPI_Finalize();
}

}  // namespace loom::launch
