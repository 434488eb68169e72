# compress/export (area: export): GGML block encodings and fp16 against llama.cpp's reference
# loops, compressed-tensors packing, the GGUF and safetensors writers' contracts.
loom_test(test_compress_export SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_compress_export.cpp
          DEPS loom_compress_export LABELS unit)
