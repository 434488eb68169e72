loom_test(test_tensor SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_tensor.cpp DEPS loom_core LABELS unit)
