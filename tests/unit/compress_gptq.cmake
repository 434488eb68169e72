# GPTQ and SparseGPT (compress/algo): factor, tp column-slice bit-identity, dead columns,
# thread-count independence, error against RTN / magnitude baselines.
loom_test(test_compress_gptq SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_compress_gptq.cpp
          DEPS loom_compress_algo LABELS unit)
