loom_test(test_weights SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_weights.cpp DEPS loom_weights LABELS unit)
