# PyTorch parity of loom-eval (area: eval): a random Llama written as model.h5, multiple-choice
# and perplexity tasks run through loom-eval with the GPT-2 tokenizer, every choice's and
# window's log-likelihood and the perplexity metrics checked against make_reference.py's model
# in float64 on the JavaScript encoder's token ids. The script also proves the comparison fails
# against deliberately wrong references (an extra context token per window, another RoPE theta).
add_test(NAME reference_eval_parity
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/reference/test_eval_reference.py
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/reference-eval
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(reference_eval_parity PROPERTIES LABELS reference TIMEOUT 300 ENVIRONMENT "OMP_NUM_THREADS=1")
