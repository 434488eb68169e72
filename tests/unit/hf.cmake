# Hugging Face interchange (area: hf): the safetensors reader/writer, and the name, layout
# and config mapping with export → import round trips.
loom_test(test_safetensors SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_safetensors.cpp DEPS loom_hf LABELS unit)
loom_test(test_hf_mapping SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_hf_mapping.cpp DEPS loom_hf LABELS unit)
