# Unit tests of core/align, the alignment losses (area: losses).
loom_test(test_align SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_align.cpp DEPS loom_model LABELS unit)
