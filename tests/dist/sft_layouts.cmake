# loom-sft under every dp x tp x pp layout of the issue (up to 8 ranks) against one process,
# both model families; ZeRO-1, GPipe, bit-identical repeats, layout errors on every rank.
add_test(NAME dist_sft_layouts
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/dist/test_sft_layouts.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/dist-sft ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist_sft_layouts PROPERTIES TIMEOUT 900 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
# train.precision=bf16: one process against f32, layouts against one bf16 process, bit-exact
# repeats and resume (tests/dist/test_sft_bf16.py).
add_test(NAME dist_sft_bf16
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/dist/test_sft_bf16.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/dist-sft-bf16 ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist_sft_bf16 PROPERTIES TIMEOUT 900 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
