# PyTorch parity of the alignment losses (area: losses). The Python script writes the inputs
# as JSON, runs align-reference-driver (loom's side) and compares every loss, statistic and
# gradient with autograd in float64.
add_executable(align-reference-driver ${PROJECT_SOURCE_DIR}/tests/reference/align_reference_driver.cpp)
target_link_libraries(align-reference-driver PRIVATE loom_model nlohmann_json::nlohmann_json)
set_target_properties(align-reference-driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

add_test(NAME reference_align
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_align_reference.py
                 ${CMAKE_BINARY_DIR}/tests/align-reference-driver ${CMAKE_BINARY_DIR}/reference-align
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(reference_align PROPERTIES LABELS reference TIMEOUT 120)

# The same comparison against a deliberately wrong reference must find mismatches, in those
# cases only: proof that it catches a wrong formula. The script inverts its verdict itself
# (rather than WILL_FAIL), so a missing driver or a crash still fails this test.
foreach(perturbation grpo_std_unbiased ppo_value_no_half)
  add_test(NAME reference_align_perturbed_${perturbation}
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_align_reference.py
                   ${CMAKE_BINARY_DIR}/tests/align-reference-driver
                   ${CMAKE_BINARY_DIR}/reference-align-${perturbation} --perturb ${perturbation}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(reference_align_perturbed_${perturbation} PROPERTIES LABELS reference TIMEOUT 120)
endforeach()
