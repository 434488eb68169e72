# End-to-end pipeline on the real corpora with the real executables.
add_test(NAME integration_sft_pipeline
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/integration/test_sft_pipeline.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/integration-sft
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(integration_sft_pipeline PROPERTIES TIMEOUT 900 LABELS integration
                     ENVIRONMENT "OMP_NUM_THREADS=2")
