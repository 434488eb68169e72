# PyTorch parity of GPTQ and SparseGPT (area: compress). The Python script writes the inputs as
# JSON, runs compress-reference-driver (loom's side) and compares the factor, codes, scales,
# masks and weights with its own torch implementation of gptq.py / sparsegpt.py (factor in
# float64, the column loop in float32 as the published code runs it).
add_executable(compress-reference-driver ${PROJECT_SOURCE_DIR}/tests/reference/compress_reference_driver.cpp)
target_link_libraries(compress-reference-driver PRIVATE loom_compress_algo nlohmann_json::nlohmann_json)
set_target_properties(compress-reference-driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

add_test(NAME reference_compress
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_compress_reference.py
                 ${CMAKE_BINARY_DIR}/tests/compress-reference-driver ${CMAKE_BINARY_DIR}/reference-compress
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(reference_compress PROPERTIES LABELS reference TIMEOUT 300)

# The same comparison against a deliberately wrong reference must find mismatches, in the
# cases that perturbation touches only. The script inverts its verdict itself (rather than
# WILL_FAIL), so a missing driver or a crash still fails these tests.
foreach(perturbation groups_from_w1 sparse_metric_magnitude)
  add_test(NAME reference_compress_perturbed_${perturbation}
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_compress_reference.py
                   ${CMAKE_BINARY_DIR}/tests/compress-reference-driver
                   ${CMAKE_BINARY_DIR}/reference-compress-${perturbation} --perturb ${perturbation}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(reference_compress_perturbed_${perturbation} PROPERTIES LABELS reference TIMEOUT 300)
endforeach()
