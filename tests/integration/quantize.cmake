# loom-quantize end to end: the same quantized.h5 on 1 rank, dp 2 and tp 2; resume after
# SIGKILL, SIGTERM and SIGUSR1; codes and masks against the source weights; loom-eval on the
# quantized models under every layout; GGUF and safetensors exports; bad input.
add_test(NAME integration_quantize
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/integration/test_quantize.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/integration-quantize
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(integration_quantize PROPERTIES TIMEOUT 900 LABELS integration ENVIRONMENT "OMP_NUM_THREADS=1")
