# End-to-end pipeline on the real corpora with the real executables.
add_test(NAME integration_sft_pipeline
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/integration/test_sft_pipeline.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/integration-sft
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(integration_sft_pipeline PROPERTIES TIMEOUT 900 LABELS integration
                     ENVIRONMENT "OMP_NUM_THREADS=2")

# docs/config.md is generated from the declarations; fail when it drifts from the code.
add_test(NAME docs_config_up_to_date
         COMMAND sh -c "$<TARGET_FILE:loom-sft> --help-markdown | diff -u docs/config.md - || { echo 'docs/config.md is stale: run build/bin/loom-sft --help-markdown > docs/config.md'; exit 1; }"
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(docs_config_up_to_date PROPERTIES LABELS unit TIMEOUT 30)
foreach(trainer rm dpo grpo ppo quantize)
  add_test(NAME docs_config_${trainer}_up_to_date
           COMMAND sh -c "$<TARGET_FILE:loom-${trainer}> --help-markdown | diff -u docs/config-${trainer}.md - || { echo 'docs/config-${trainer}.md is stale: run build/bin/loom-${trainer} --help-markdown > docs/config-${trainer}.md'; exit 1; }"
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(docs_config_${trainer}_up_to_date PROPERTIES LABELS unit TIMEOUT 30)
endforeach()
