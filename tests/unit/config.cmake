# io/config and io/record: settings, command line, help/docs, run records, progress.
loom_test(test_config_load SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_config_load.cpp
          DEPS loom_config LABELS unit)
loom_test(test_config_cli SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_config_cli.cpp
          DEPS loom_config LABELS unit)
loom_test(test_record SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_record.cpp
          DEPS loom_record LABELS unit)
loom_test(test_record_progress SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_record_progress.cpp
          DEPS loom_record LABELS unit)
