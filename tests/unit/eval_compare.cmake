# eval/compare*, eval/plot*: loom-eval compare (table, gate, plot). The test links only these
# sources, so it builds while the rest of eval/ is being written and pulls no model code.
add_library(loom_eval_compare_test_sources STATIC
            ${PROJECT_SOURCE_DIR}/eval/compare.cpp ${PROJECT_SOURCE_DIR}/eval/compare_cli.cpp
            ${PROJECT_SOURCE_DIR}/eval/compare_gate.cpp ${PROJECT_SOURCE_DIR}/eval/compare_results.cpp
            ${PROJECT_SOURCE_DIR}/eval/plot.cpp)
target_include_directories(loom_eval_compare_test_sources PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(loom_eval_compare_test_sources PUBLIC yaml-cpp nlohmann_json::nlohmann_json CLI11::CLI11)
loom_test(test_eval_compare SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_eval_compare.cpp
          DEPS loom_eval_compare_test_sources LABELS unit)
