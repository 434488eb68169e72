# eval/task*: task YAML files, their data sources and documents.
loom_test(test_eval_tasks SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_eval_tasks.cpp
          DEPS loom_eval LABELS unit)
