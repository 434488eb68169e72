# bench-collectives: MpiComm collectives over MPI_COMM_WORLD (docs/performance.md, "Collectives").
# The smoke test runs small sizes on 2 ranks; it fails when any collective returns a wrong value.
loom_executable(bench-collectives SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_collectives.cpp
                DEPS loom_launch loom_record CLI11::CLI11 nlohmann_json::nlohmann_json)
if(TARGET bench-collectives)
  add_test(NAME bench_collectives_np2
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} 2
                   $<TARGET_FILE:bench-collectives> --max-bytes 65536 --iters 3
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(bench_collectives_np2 PROPERTIES TIMEOUT 60 LABELS bench ENVIRONMENT "OMP_NUM_THREADS=1")
endif()
