# launch/ on the GPU: NcclComm against MpiComm and CUDA device selection, under mpirun with
# one rank per visible GPU (run_nccl_test.sh). Built only with CUDA and NCCL; skipped
# (exit 77) on a machine without a GPU.
if(TARGET loom_nccl)
  add_executable(test_nccl_comm ${PROJECT_SOURCE_DIR}/tests/gpu/test_nccl_comm.cpp)
  target_link_libraries(test_nccl_comm PRIVATE loom_nccl Boost::unit_test_framework)
  target_compile_definitions(test_nccl_comm PRIVATE BOOST_TEST_DYN_LINK)
  set_target_properties(test_nccl_comm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME test_nccl_comm
           COMMAND sh ${PROJECT_SOURCE_DIR}/tests/gpu/run_nccl_test.sh ${MPIEXEC_EXECUTABLE}
                   $<TARGET_FILE:test_nccl_comm> --log_level=test_suite
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(test_nccl_comm PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 300
                       ENVIRONMENT "OMP_NUM_THREADS=1")
endif()
