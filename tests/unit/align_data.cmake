# Alignment data: WordNet preference pairs, arithmetic prompts, the rule-based verifier,
# and loom-prep's wordnet-pairs / arithmetic commands.
loom_test(test_align_data SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_align_data.cpp
          DEPS loom_data LABELS unit)
add_dependencies(test_align_data loom-prep)  # its last case runs loom-prep
