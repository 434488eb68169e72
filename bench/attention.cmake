# bench-attention: tensor-core vs SIMT attention on GPU 0 (area: attntc). Only in CUDA builds;
# without a GPU it prints a "skipped" JSON object and exits 0.
if(TARGET loom_cuda)
  loom_executable(bench-attention SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_attention.cpp
                  DEPS loom_cuda nlohmann_json::nlohmann_json)
endif()
