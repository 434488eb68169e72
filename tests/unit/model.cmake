# Unit tests of core/model and core/optim (area: model).
loom_test(test_model SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_model.cpp DEPS loom_model LABELS unit)
loom_test(test_optim SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_optim.cpp DEPS loom_model LABELS unit)
loom_test(test_slice_boxes SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_slice_boxes.cpp DEPS loom_model LABELS unit)
loom_test(test_mixed_precision SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_mixed_precision.cpp DEPS loom_model LABELS unit)
