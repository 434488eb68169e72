# LoRA adapters (area: lora): layout, adapter forward/backward, finite differences, merging.
loom_test(test_lora SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_lora.cpp DEPS loom_model LABELS unit)
