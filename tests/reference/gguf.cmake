# GGUF and compressed-tensors export (area: export). gguf-export-driver writes small random
# Llama and GPT-2 models as GGUF (Q8_0, Q4_0) and compressed-tensors safetensors; the Python
# test reads them with its own GGUF reader (gguf_reader.py, stdlib + numpy) and a hand-written
# safetensors parser and checks layout, metadata and values against the models' own values.
add_executable(gguf-export-driver ${PROJECT_SOURCE_DIR}/tests/reference/gguf_export_driver.cpp)
target_link_libraries(gguf-export-driver PRIVATE loom_compress_export nlohmann_json::nlohmann_json)
set_target_properties(gguf-export-driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

add_test(NAME reference_gguf
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_gguf_export.py
                 ${CMAKE_BINARY_DIR}/tests/gguf-export-driver ${CMAKE_BINARY_DIR}/reference-gguf
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(reference_gguf PROPERTIES LABELS reference TIMEOUT 180)
