# LoRA fine-tuning with the real executables: loss falls, merged plain export with the base
# frozen, bit-exact resume from a LoRA checkpoint, bad targets rejected.
add_test(NAME integration_lora_sft
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/integration/test_lora_sft.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/integration-lora
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(integration_lora_sft PROPERTIES TIMEOUT 900 LABELS integration ENVIRONMENT "OMP_NUM_THREADS=2")
