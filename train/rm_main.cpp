// loom-rm: reward-model training on preference pairs (see train/rm.h).
#include "train/rm.h"
#include "train/entry_point.h"

int main(int argc, char** argv) {
  return loom::train::trainer_main(
      argc, argv, loom::train::rm_schema(),
      {"loom-rm",
       "Train a reward model (scalar head on the last token, Bradley-Terry loss) on {prompt, chosen, rejected} pairs",
       {"loom-rm --config configs/tiny-wordnet-rm.yaml",
        "mpirun -np 4 loom-rm --config configs/tiny-wordnet-rm.yaml parallel.tp=2"}},
      loom::train::run_rm);
}
