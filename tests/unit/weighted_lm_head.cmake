# The weighted LM-head backward of the alignment losses (Transformer::lm_head_backward with
# per-token weights, lm_token_losses) against finite differences and the uniform path.
loom_test(test_weighted_lm_head SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_weighted_lm_head.cpp DEPS loom_model LABELS unit)
