# Data tests: built-in corpora (Brown, WordNet), JSONL, chat template, HDF5 token stores,
# the data loader and loom-prep.
loom_test(test_data_corpora SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_data_corpora.cpp
          DEPS loom_data LABELS unit)
