# Tokenizer tests: unit behaviour and parity with the gpt-3-encoder JavaScript on Brown text.
loom_test(test_tokenizer SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_tokenizer.cpp
          DEPS loom_tokenizer LABELS unit)
loom_test(test_tokenizer_gpt2_parity SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_tokenizer_gpt2_parity.cpp
          DEPS loom_tokenizer loom_data nlohmann_json::nlohmann_json LABELS unit reference)
loom_test(test_tokenizer_brown SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_tokenizer_brown.cpp
          DEPS loom_tokenizer loom_data LABELS unit)
