# Hugging Face interchange (area: hf) against an independent PyTorch model in HF conventions:
# import → logits parity, export bit-exactness, error messages. Runs the built executables.
add_test(NAME reference_hf_parity
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_hf_parity.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/reference-hf
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(reference_hf_parity PROPERTIES LABELS reference TIMEOUT 120 ENVIRONMENT "OMP_NUM_THREADS=2")
