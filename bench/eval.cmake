# bench-eval: loom-eval scoring tokens/s against the training forward pass (docs/performance.md, "Evaluation").
loom_executable(bench-eval SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_eval.cpp
                DEPS loom_eval CLI11::CLI11 nlohmann_json::nlohmann_json)
if(TARGET bench-eval)
  add_test(NAME bench_eval_smoke COMMAND $<TARGET_FILE:bench-eval> --batch 2 --seq 16 --repeats 1 --threads 1
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(bench_eval_smoke PROPERTIES TIMEOUT 120 LABELS bench)
endif()
