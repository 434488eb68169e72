# bench-generate: prefill and decode tokens/s of the tiny-brown shape with a KV cache
# (docs/performance.md, "Generation"). The smoke test generates a few tokens under tp 2.
loom_executable(bench-generate SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_generate.cpp
                DEPS loom_train CLI11::CLI11 nlohmann_json::nlohmann_json)
if(TARGET bench-generate)
  add_test(NAME bench_generate_np2
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} 2
                   $<TARGET_FILE:bench-generate> --tp 2 --threads 1 --batches 1,2 --prompt-len 4 --new-tokens 3
                   --repeats 1
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(bench_generate_np2 PROPERTIES TIMEOUT 120 LABELS bench ENVIRONMENT "OMP_NUM_THREADS=1")
endif()
