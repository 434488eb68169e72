# launch/: rank mapping and environment (unit, no MPI) and the MPI runtime, process groups
# and MpiComm collectives under mpirun -np 2 and 4 (dist).
loom_test(test_process_groups SOURCE ${PROJECT_SOURCE_DIR}/tests/dist/test_process_groups.cpp
          DEPS loom_launch LABELS unit TIMEOUT 60)

add_executable(test_dist_comm ${PROJECT_SOURCE_DIR}/tests/dist/test_dist_comm.cpp)
target_link_libraries(test_dist_comm PRIVATE loom_launch)
set_target_properties(test_dist_comm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
foreach(ranks 2 4)
  add_test(NAME dist_comm_np${ranks}
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${ranks}
                   $<TARGET_FILE:test_dist_comm>
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(dist_comm_np${ranks} PROPERTIES TIMEOUT 120 LABELS dist
                       ENVIRONMENT "OMP_NUM_THREADS=1")
endforeach()

# Tensor-parallel transformer shards against the whole model (tp = 2 and 4).
add_executable(test_dist_tensor_parallel ${PROJECT_SOURCE_DIR}/tests/dist/test_dist_tensor_parallel.cpp)
target_link_libraries(test_dist_tensor_parallel PRIVATE loom_launch loom_model)
set_target_properties(test_dist_tensor_parallel PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
foreach(ranks 2 4)
  add_test(NAME dist_tensor_parallel_np${ranks}
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${ranks}
                   $<TARGET_FILE:test_dist_tensor_parallel>
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(dist_tensor_parallel_np${ranks} PROPERTIES TIMEOUT 120 LABELS dist
                       ENVIRONMENT "OMP_NUM_THREADS=1")
endforeach()
