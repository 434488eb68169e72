# The table-driven op test: every Backend op, forward against scalar loops and backward
# against finite differences, on every compiled backend.
loom_test(test_ops SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_ops.cpp DEPS loom_core LABELS unit)
