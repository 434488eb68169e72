# Unit tests of KV-cache generation (core/model/generation, kv_cache; area: generation).
loom_test(test_generation SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_generation.cpp DEPS loom_model LABELS unit)
