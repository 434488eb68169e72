# eval/compare*, eval/plot*: loom-eval compare (table, gate, plot).
loom_test(test_eval_compare SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_eval_compare.cpp
          DEPS loom_eval LABELS unit)
