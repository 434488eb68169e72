# loom-eval end to end: known answers, batch-size and rank-count independence, resume after
# SIGTERM/SIGKILL with another rank count, every step of a run, compare + gate, bad input.
add_test(NAME integration_eval
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/integration/test_eval.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/integration-eval
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(integration_eval PROPERTIES TIMEOUT 900 LABELS integration ENVIRONMENT "OMP_NUM_THREADS=1")
