# The alignment trainers end to end (issue 5): loom-rm, loom-dpo, loom-grpo and loom-ppo in
# dp2, tp2, pp2 and a 4-rank layout against one process; bit-exact resume of each (PPO also
# under mpirun); their configuration errors. Tiny shapes, train.threads=1.
add_test(NAME dist_align_trainers
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/dist/test_align_trainers.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/dist-align ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist_align_trainers PROPERTIES TIMEOUT 600 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
