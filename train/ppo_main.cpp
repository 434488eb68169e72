// loom-ppo: PPO with actor, critic, frozen reference and reward (see train/ppo.h).
#include "train/entry_point.h"
#include "train/ppo.h"

int main(int argc, char** argv) {
  return loom::train::trainer_main(
      argc, argv, loom::train::ppo_schema(),
      {"loom-ppo",
       "PPO: sample completions, score them (reward model or verifier), and update actor and critic with clipped "
       "objectives under a KL penalty to the reference",
       {"loom-ppo --config configs/tiny-arith-ppo.yaml",
        "mpirun -np 2 loom-ppo --config configs/tiny-arith-ppo.yaml parallel.pp=2"}},
      loom::train::run_ppo);
}
