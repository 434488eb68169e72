# PyTorch parity of the transformer and optimizer (area: model).
# reference_data writes the golden HDF5 files with /usr/bin/python3 (Debian's python3-torch,
# numpy, h5py); the parity tests require that fixture and read the files from
# LOOM_REFERENCE_DIR.
set(LOOM_REFERENCE_DIR ${CMAKE_BINARY_DIR}/reference)
add_test(NAME reference_data
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/make_reference.py --out ${LOOM_REFERENCE_DIR}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(reference_data PROPERTIES FIXTURES_SETUP reference_data LABELS reference TIMEOUT 300)

loom_test(test_model_parity SOURCE ${PROJECT_SOURCE_DIR}/tests/reference/test_model_parity.cpp
          DEPS loom_model hdf5::hdf5 MPI::MPI_C LABELS reference)
set_tests_properties(test_model_parity PROPERTIES FIXTURES_REQUIRED reference_data)
set_property(TEST test_model_parity APPEND PROPERTY ENVIRONMENT "LOOM_REFERENCE_DIR=${LOOM_REFERENCE_DIR}")

# The same executable with one gradient deliberately corrupted must FAIL: proof that the
# comparison can catch a wrong gradient (the earliest layer's qkv, where errors compound).
add_test(NAME test_model_parity_perturbed
         COMMAND test_model_parity --run_test=llama_lm --log_level=test_suite
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(test_model_parity_perturbed PROPERTIES
  FIXTURES_REQUIRED reference_data LABELS reference TIMEOUT 300 WILL_FAIL TRUE
  ENVIRONMENT "LOOM_REFERENCE_DIR=${LOOM_REFERENCE_DIR};LOOM_REFERENCE_PERTURB=layers.0.attn.qkv.weight;OMP_NUM_THREADS=2")
