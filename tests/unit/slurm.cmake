# slurm/: loom-submit's rendering, validation and submission (a fake sbatch; no cluster).
loom_test(test_slurm_render SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_slurm_render.cpp DEPS loom_slurm yaml-cpp LABELS unit)
loom_test(test_slurm_validate SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_slurm_validate.cpp DEPS loom_slurm LABELS unit)
loom_test(test_slurm_submit SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_slurm_submit.cpp DEPS loom_slurm nlohmann_json::nlohmann_json LABELS unit)
add_dependencies(test_slurm_submit loom-submit)
loom_test(test_slurm_requeue SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_slurm_requeue.cpp DEPS loom_slurm LABELS unit)
