# PyTorch parity of the pruning masks and SmoothQuant (area: prune). The Python script writes
# weights and calibration samples as JSON, runs wanda-reference-driver (loom's side) and
# compares Wanda's and magnitude's masks (unstructured and 2:4), SmoothQuant's scales and
# smoothed weights and the per-token int8 activations with the published code in torch.
add_executable(wanda-reference-driver ${PROJECT_SOURCE_DIR}/tests/reference/wanda_reference_driver.cpp)
target_link_libraries(wanda-reference-driver PRIVATE loom_compress_algo nlohmann_json::nlohmann_json)
set_target_properties(wanda-reference-driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

add_test(NAME reference_wanda
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_wanda_reference.py
                 ${CMAKE_BINARY_DIR}/tests/wanda-reference-driver ${CMAKE_BINARY_DIR}/reference-wanda
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(reference_wanda PROPERTIES LABELS reference TIMEOUT 120)

# The same comparison against a deliberately wrong reference must find mismatches, in the
# outputs that rule touches only: proof that it catches a wrong rule. The script inverts its
# verdict itself (rather than WILL_FAIL), so a missing driver or a crash still fails this test.
foreach(perturbation wanda_ties_to_higher_column magnitude_strict smooth_alpha_swapped)
  add_test(NAME reference_wanda_perturbed_${perturbation}
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_wanda_reference.py
                   ${CMAKE_BINARY_DIR}/tests/wanda-reference-driver
                   ${CMAKE_BINARY_DIR}/reference-wanda-${perturbation} --perturb ${perturbation}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(reference_wanda_perturbed_${perturbation} PROPERTIES LABELS reference TIMEOUT 120)
endforeach()
