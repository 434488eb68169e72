loom_executable(bench-train SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/bench_train.cpp DEPS loom_model CLI11::CLI11)
if(TARGET loom_cuda)
  target_link_libraries(bench-train PRIVATE loom_cuda)
endif()
