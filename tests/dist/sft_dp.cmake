# loom-sft data parallel: mpirun -np 2 against one process on the same data and model
# (losses, validation and final weights agree), rank 0 alone writes, layout errors.
add_test(NAME dist_sft_dp
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/dist/test_sft_dp.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/dist-sft ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist_sft_dp PROPERTIES TIMEOUT 300 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
