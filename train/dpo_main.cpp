// loom-dpo: DPO / IPO / cDPO / SimPO on preference pairs (see train/dpo.h).
#include "train/dpo.h"
#include "train/entry_point.h"

int main(int argc, char** argv) {
  return loom::train::trainer_main(
      argc, argv, loom::train::dpo_schema(),
      {"loom-dpo",
       "Align a policy with preference pairs: DPO (sigmoid), IPO, conservative DPO or SimPO, against a frozen "
       "reference model",
       {"loom-dpo --config configs/tiny-wordnet-dpo.yaml",
        "loom-dpo --config configs/tiny-wordnet-dpo.yaml dpo.loss=ipo dpo.beta=0.5",
        "mpirun -np 4 loom-dpo --config configs/tiny-wordnet-dpo.yaml parallel.pp=2"}},
      loom::train::run_dpo);
}
