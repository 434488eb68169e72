# launch/: rank mapping and environment (unit, no MPI) and the MPI runtime, process groups
# and MpiComm collectives under mpirun -np 2 and 4 (dist); tensor-parallel transformer
# shards against the whole model (tp = 2 and 4).
loom_test(test_process_groups SOURCE ${PROJECT_SOURCE_DIR}/tests/dist/test_process_groups.cpp
          DEPS loom_launch LABELS unit TIMEOUT 60)

# An MPI test program run as dist_<name>_np<N> for each rank count.
function(loom_mpi_test NAME)
  cmake_parse_arguments(ARG "" "" "DEPS;RANKS" ${ARGN})
  add_executable(test_dist_${NAME} ${PROJECT_SOURCE_DIR}/tests/dist/test_dist_${NAME}.cpp)
  target_link_libraries(test_dist_${NAME} PRIVATE ${ARG_DEPS})
  set_target_properties(test_dist_${NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  foreach(ranks ${ARG_RANKS})
    add_test(NAME dist_${NAME}_np${ranks}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${ranks}
                     $<TARGET_FILE:test_dist_${NAME}>
             WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(dist_${NAME}_np${ranks} PROPERTIES TIMEOUT 120 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
  endforeach()
endfunction()

loom_mpi_test(comm DEPS loom_launch RANKS 2 4)
loom_mpi_test(tensor_parallel DEPS loom_launch loom_model RANKS 2 4)
