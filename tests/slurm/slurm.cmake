# End-to-end tests on a real single-node Slurm (ci/slurm.sh: munged, slurmctld, slurmd under
# build/slurm-cluster): preemption and requeue, pipelines, the evaluation array and its gate,
# the quantize stage (pipeline and preemption of loom-quantize),
# all driven through loom-submit. Label `slurm` (`ctest -L slurm`, about 2 minutes on 2 cores).
# The fixture starts the cluster once and stops it at the end; every test also starts it when
# it is not up. Without root or the Debian packages slurmctld slurmd slurm-client munge, the
# tests exit 77 and CTest reports them skipped, with the reason in their output.
set(loom_slurm_dir ${CMAKE_BINARY_DIR}/slurm-cluster)
set(loom_slurm_env "LOOM_SLURM_DIR=${loom_slurm_dir}" "OMP_NUM_THREADS=1")

add_test(NAME slurm_cluster_start COMMAND ${PROJECT_SOURCE_DIR}/ci/slurm.sh start
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(slurm_cluster_start PROPERTIES LABELS slurm TIMEOUT 120 SKIP_RETURN_CODE 77
                     FIXTURES_SETUP slurm_cluster ENVIRONMENT "${loom_slurm_env}")
add_test(NAME slurm_cluster_stop COMMAND ${PROJECT_SOURCE_DIR}/ci/slurm.sh stop
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(slurm_cluster_stop PROPERTIES LABELS slurm TIMEOUT 120
                     FIXTURES_CLEANUP slurm_cluster ENVIRONMENT "${loom_slurm_env}")

foreach(name preemption pipeline eval_array quantize)
  string(REPLACE "_" "-" work ${name})
  add_test(NAME slurm_${name}
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/slurm/test_slurm_${name}.py
                   ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/slurm-${work} ${MPIEXEC_EXECUTABLE}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(slurm_${name} PROPERTIES LABELS slurm TIMEOUT 600 SKIP_RETURN_CODE 77
                       FIXTURES_REQUIRED slurm_cluster ENVIRONMENT "${loom_slurm_env}")
endforeach()
