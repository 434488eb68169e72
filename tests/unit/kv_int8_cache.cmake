# Unit tests of the int8 KV cache (core/model/kv_cache, the CPU int8 cached attention; area: kvcache).
loom_test(test_kv_int8_cache SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_kv_int8_cache.cpp DEPS loom_model LABELS unit)
