# bench-gemm links both GEMM libraries directly (not through loom_gemm) to compare them.
if(TARGET loom_gemm_openblas AND TARGET loom_gemm_onednn)
  loom_executable(bench-gemm SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_gemm.cpp
                  DEPS loom_gemm loom_gemm_openblas loom_gemm_onednn CLI11::CLI11
                       nlohmann_json::nlohmann_json OpenMP::OpenMP_CXX)
endif()
