# train/: the pipeline stage split of the engine (pure, no MPI calls).
loom_test(test_stage_split SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_stage_split.cpp DEPS loom_train LABELS unit)
