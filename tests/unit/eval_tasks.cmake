# eval/task*: task YAML files, their data sources and documents. The test links only these
# sources (not loom_eval), so it builds while the scorer and runner are being written.
add_library(loom_eval_tasks_test_sources STATIC
            ${PROJECT_SOURCE_DIR}/eval/task.cpp ${PROJECT_SOURCE_DIR}/eval/task_sources.cpp
            ${PROJECT_SOURCE_DIR}/eval/task_template.cpp)
target_include_directories(loom_eval_tasks_test_sources PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(loom_eval_tasks_test_sources PUBLIC loom_data loom_config yaml-cpp
                      nlohmann_json::nlohmann_json)
loom_test(test_eval_tasks SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_eval_tasks.cpp
          DEPS loom_eval_tasks_test_sources LABELS unit)
