# launch/watchdog: heartbeat files, parsing and the report (unit, no MPI), and the hang
# itself under mpirun -np 2 and 4: a stuck job must end with exit code 86 and a report
# naming the rank behind; a healthy one must finish with 0 and no report.
loom_test(test_watchdog SOURCE ${PROJECT_SOURCE_DIR}/tests/dist/test_watchdog.cpp
          DEPS loom_launch LABELS unit TIMEOUT 60)

add_executable(test_dist_watchdog ${PROJECT_SOURCE_DIR}/tests/dist/test_dist_watchdog.cpp)
target_link_libraries(test_dist_watchdog PRIVATE loom_launch loom_model)
set_target_properties(test_dist_watchdog PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
# The test expects aborts, so a script runs mpirun and checks exit codes, timing and stderr.
add_test(NAME dist_watchdog
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/dist/test_watchdog.py
                 $<TARGET_FILE:test_dist_watchdog> ${CMAKE_BINARY_DIR}/dist-watchdog ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist_watchdog PROPERTIES TIMEOUT 180 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
