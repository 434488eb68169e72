# Fault-tolerant sharded checkpoints (issue 4), end to end with loom-sft under mpirun.
# resume: SIGKILL of a whole 4-rank job at random moments (mid-save included), restarted each
# time, must end bit-identical to an uninterrupted run; a checkpoint resumes in other layouts.
add_test(NAME dist_checkpoint_resume
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/dist/test_checkpoint_resume.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/dist-checkpoint-resume ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist_checkpoint_resume PROPERTIES TIMEOUT 600 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
# faults: corrupt shards and indexes, view.h5 through h5py, SIGUSR1/SIGTERM/SIGINT and the
# walltime (exit 75), the watchdog (86), non-finite steps (skip, rollback, 65), unwritable
# and full checkpoint directories (74 or carry on). Mounts a small tmpfs when it may.
add_test(NAME dist_checkpoint_faults
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/dist/test_checkpoint_faults.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/dist-checkpoint-faults ${MPIEXEC_EXECUTABLE}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(dist_checkpoint_faults PROPERTIES TIMEOUT 600 LABELS dist ENVIRONMENT "OMP_NUM_THREADS=1")
