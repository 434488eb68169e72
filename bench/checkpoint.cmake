# bench-checkpoint: checkpoint save/load GB/s against dd and the asynchronous save's stall
# (docs/performance.md, "Checkpoints"). The smoke test runs a 1-layer model on 2 ranks.
loom_executable(bench-checkpoint SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_checkpoint.cpp
                DEPS loom_train CLI11::CLI11 nlohmann_json::nlohmann_json)
if(TARGET bench-checkpoint)
  add_test(NAME bench_checkpoint_np2
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} 2
                   $<TARGET_FILE:bench-checkpoint> --layers 1 --steps 1 --threads 1 --tp 2
                   --dir ${CMAKE_BINARY_DIR}/bench-checkpoint-smoke
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(bench_checkpoint_np2 PROPERTIES TIMEOUT 300 LABELS bench ENVIRONMENT "OMP_NUM_THREADS=1")
endif()
