# Quantized CPU GEMMs (W8A8, W8A16, W4A16) on every compiled ISA against the plain reference, and the int8 KV cache.
loom_test(test_quant_gemm SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_quant_gemm.cpp DEPS loom_core LABELS unit)
