# Generation under tp and pp (train/generator) against the single-process generate() on the
# whole model: greedy and seeded sampled tokens, stop tokens, replica agreement, both
# families with replicated and split kv heads; layouts tp 2, pp 2 (np 2 and 4) and
# tp 2 x pp 2 (np 4).
add_executable(test_dist_generation ${PROJECT_SOURCE_DIR}/tests/dist/test_dist_generation.cpp)
target_link_libraries(test_dist_generation PRIVATE loom_train)
set_target_properties(test_dist_generation PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
foreach(ranks 2 4)
  add_test(NAME dist_generation_np${ranks}
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${ranks}
                   $<TARGET_FILE:test_dist_generation>
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(dist_generation_np${ranks} PROPERTIES TIMEOUT 120 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
endforeach()
