# bench-quant-gemm: quantized linear layers against f32 sgemm; with oneDNN found it also times
# oneDNN's int8 matmul to compare with loom's W8A8 kernel.
loom_executable(bench-quant-gemm SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_quant_gemm.cpp
                DEPS loom_core CLI11::CLI11 nlohmann_json::nlohmann_json OpenMP::OpenMP_CXX)
if(TARGET bench-quant-gemm AND TARGET loom_dnnl)
  target_link_libraries(bench-quant-gemm PRIVATE loom_dnnl)
  target_compile_definitions(bench-quant-gemm PRIVATE LOOM_BENCH_ONEDNN=1)
endif()
