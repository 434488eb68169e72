# Data tests: built-in corpora (Brown, WordNet), JSONL, chat template, HDF5 token stores,
# the data loader and loom-prep.
loom_test(test_data_corpora SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_data_corpora.cpp
          DEPS loom_data LABELS unit)
loom_test(test_data_jsonl SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_data_jsonl.cpp
          DEPS loom_data LABELS unit)
loom_test(test_data_store SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_data_store.cpp
          DEPS loom_data LABELS unit)
add_dependencies(test_data_store loom-prep)  # its last case runs loom-prep
loom_test(test_data_loader SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_data_loader.cpp
          DEPS loom_data nlohmann_json::nlohmann_json LABELS unit)
