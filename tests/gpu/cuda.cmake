# GPU tests of the CUDA backend (area: cudaops). Registered only where loom_cuda is built;
# without a GPU the test prints why and exits 77, which CTest reports as skipped.
if(TARGET loom_cuda)
  loom_test(test_cuda_ops SOURCE ${PROJECT_SOURCE_DIR}/tests/gpu/test_cuda_ops.cpp DEPS loom_cuda LABELS gpu)
  set_tests_properties(test_cuda_ops PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
endif()
