# loom-eval's scorer: batch-size independence (bit-exact) and tp 2 against one process.
add_executable(test_eval_scorer ${PROJECT_SOURCE_DIR}/tests/dist/test_eval_scorer.cpp)
target_link_libraries(test_eval_scorer PRIVATE loom_eval)
set_target_properties(test_eval_scorer PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME eval_scorer_np1 COMMAND $<TARGET_FILE:test_eval_scorer> ${CMAKE_BINARY_DIR}/eval-scorer-reference.txt
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
add_test(NAME eval_scorer_np2
         COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} 2
                 $<TARGET_FILE:test_eval_scorer> ${CMAKE_BINARY_DIR}/eval-scorer-reference.txt
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(eval_scorer_np1 PROPERTIES TIMEOUT 60 LABELS dist FIXTURES_SETUP eval_scorer_reference)
set_tests_properties(eval_scorer_np2 PROPERTIES TIMEOUT 60 LABELS dist FIXTURES_REQUIRED eval_scorer_reference
                     ENVIRONMENT "OMP_NUM_THREADS=1")
