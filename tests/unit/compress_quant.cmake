# Unit tests of RTN quantization (core/quant), calibration statistics, pruning masks and
# SmoothQuant (compress/algo) (area: prune).
loom_test(test_compress_quant SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_compress_quant.cpp
          DEPS loom_compress_algo LABELS unit)
