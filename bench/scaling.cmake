# bench-scaling: a training step under a dp x tp x pp layout (docs/performance.md, "Scaling").
#
# This file has two jobs. Included by bench/CMakeLists.txt it registers the executable and
# the smoke test bench_scaling_np2. Run as a script (cmake -DBENCH=... -DMPIEXEC=...
# -DNP_FLAG=... -P bench/scaling.cmake), it is that test: a tiny 2-stage run must exit 0 and
# print one JSON object whose measured numbers are all finite and in range (nlohmann-json
# writes NaN and infinity as null), and a layout that does not fit 2 ranks must exit 2.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  loom_executable(bench-scaling SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_scaling.cpp
                  DEPS loom_train loom_record CLI11::CLI11 nlohmann_json::nlohmann_json)
  if(TARGET bench-scaling)
    add_test(NAME bench_scaling_np2
             COMMAND ${CMAKE_COMMAND} -DBENCH=$<TARGET_FILE:bench-scaling> -DMPIEXEC=${MPIEXEC_EXECUTABLE}
                     -DNP_FLAG=${MPIEXEC_NUMPROC_FLAG} -P ${CMAKE_CURRENT_LIST_FILE}
             WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(bench_scaling_np2 PROPERTIES TIMEOUT 120 LABELS bench ENVIRONMENT "OMP_NUM_THREADS=1")
  endif()
else()
  set(launch ${MPIEXEC} --allow-run-as-root --oversubscribe ${NP_FLAG} 2 ${BENCH})
  execute_process(COMMAND ${launch} --pp 2 --d-model 64 --layers 2 --heads 4 --kv-heads 2 --vocab 256 --seq 16
                          --micro-rows 1 --micro-batches 4 --steps 1 --warmup 0
                  OUTPUT_VARIABLE json ERROR_VARIABLE log RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "bench-scaling --pp 2 on 2 ranks exited with ${status}:\n${log}")
  endif()
  string(JSON name ERROR_VARIABLE problem GET "${json}" benchmark)
  if(problem OR NOT name STREQUAL "bench-scaling")
    message(FATAL_ERROR "bench-scaling printed no JSON object with \"benchmark\": \"bench-scaling\" "
                        "(${problem}); stdout was:\n${json}\nstderr:\n${log}")
  endif()

  # check(KEY... MIN MAX): the value at the JSON path KEY... is a number within [MIN, MAX].
  function(check)
    list(POP_BACK ARGV max)
    list(POP_BACK ARGV min)
    string(JSON type ERROR_VARIABLE problem TYPE "${json}" ${ARGV})
    if(problem OR NOT type STREQUAL "NUMBER")
      message(FATAL_ERROR "bench-scaling: '${ARGV}' is not a finite number (type ${type}; ${problem}):\n${json}")
    endif()
    string(JSON value GET "${json}" ${ARGV})
    if(value LESS min OR value GREATER max)
      message(FATAL_ERROR "bench-scaling: '${ARGV}' = ${value}, expected within [${min}, ${max}]:\n${json}")
    endif()
  endfunction()

  check(world_size 2 2)
  check(dp 1 1)
  check(pp 2 2)
  check(tokens_per_s 1e-9 1e12)
  check(step_s_median 1e-9 1e6)
  check(comm_fraction 0 1)
  check(comm_fraction_by_axis tp 0 0)
  check(comm_fraction_by_axis dp 0 0)
  check(comm_fraction_by_axis pp 0 1)
  check(bubble_measured 0 1)
  check(bubble_makespan 0 1)
  check(bubble_by_stage 0 0 1)
  check(bubble_by_stage 1 0 1)
  # (pp - 1) / (m + pp - 1) with pp 2, m 4.
  check(bubble_theoretical 0.2 0.2)
  check(memory_bytes_rank0 total 1 1e12)
  # A freshly initialised model predicts close to uniformly: ln(256) = 5.55.
  check(loss_first_step 5.0 6.1)
  string(JSON stages LENGTH "${json}" bubble_by_stage)
  if(NOT stages EQUAL 2)
    message(FATAL_ERROR "bench-scaling: bubble_by_stage has ${stages} entries, expected 2:\n${json}")
  endif()

  execute_process(COMMAND ${launch} --pp 3 --steps 1 --warmup 0
                  OUTPUT_VARIABLE unused ERROR_VARIABLE log RESULT_VARIABLE status)
  if(NOT status EQUAL 2 OR NOT log MATCHES "parallel.pp = 3")
    message(FATAL_ERROR "bench-scaling --pp 3 on 2 ranks should exit 2 naming parallel.pp; "
                        "it exited ${status}:\n${log}")
  endif()
  message(STATUS "bench-scaling: JSON complete and finite; layout error exits 2")
endif()
