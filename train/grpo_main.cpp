// loom-grpo: group relative policy optimisation with verifiable rewards (see train/grpo.h).
#include "train/entry_point.h"
#include "train/grpo.h"

int main(int argc, char** argv) {
  return loom::train::trainer_main(
      argc, argv, loom::train::grpo_schema(),
      {"loom-grpo",
       "GRPO: sample a group of completions per prompt, reward them with a verifier, and push the policy towards "
       "the better ones of each group",
       {"loom-grpo --config configs/tiny-arith-grpo.yaml",
        "mpirun -np 2 loom-grpo --config configs/tiny-arith-grpo.yaml parallel.tp=2"}},
      loom::train::run_grpo);
}
