# bf16 storage on the CPU backend: each op on bf16 tensors gives exactly to_bf16 of the same
# op on f32 tensors, and the dtype combinations the CUDA backend refuses are refused.
loom_test(test_ops_bf16 SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_ops_bf16.cpp DEPS loom_core LABELS unit)
