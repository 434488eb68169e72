# GPU tests of the trainers on the CUDA backend (area: gputrain). Registered only where
# loom_cuda is built; without a GPU each prints why and exits 77 (CTest: skipped).
if(TARGET loom_cuda)
  loom_test(test_gpu_model_parity SOURCE ${PROJECT_SOURCE_DIR}/tests/gpu/test_gpu_model_parity.cpp
            DEPS loom_model loom_cuda LABELS gpu)
  set_tests_properties(test_gpu_model_parity PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
  loom_test(test_gpu_generation SOURCE ${PROJECT_SOURCE_DIR}/tests/gpu/test_gpu_generation.cpp
            DEPS loom_model loom_cuda LABELS gpu)
  set_tests_properties(test_gpu_generation PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
  add_test(NAME gpu_sft_resume
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/gpu/test_gpu_sft_resume.py
                   ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/gpu-sft-resume
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(gpu_sft_resume PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu TIMEOUT 900
                       ENVIRONMENT "OMP_NUM_THREADS=2")
endif()
