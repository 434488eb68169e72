# GPU test of the tensor-core attention kernels (area: attntc). Registered only where loom_cuda
# is built; without a GPU the test prints why and exits 77, which CTest reports as skipped.
if(TARGET loom_cuda)
  loom_test(test_cuda_attention_tc SOURCE ${PROJECT_SOURCE_DIR}/tests/gpu/test_cuda_attention_tc.cpp DEPS loom_cuda
            LABELS gpu)
  set_tests_properties(test_cuda_attention_tc PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
endif()
