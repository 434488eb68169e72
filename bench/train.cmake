loom_executable(bench-train SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/bench_train.cpp DEPS loom_model CLI11::CLI11)
