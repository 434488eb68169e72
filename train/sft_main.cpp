// loom-sft: pre-training on raw text and supervised fine-tuning (see train/sft.h).
#include "train/sft.h"
#include "train/entry_point.h"

int main(int argc, char** argv) {
  return loom::train::trainer_main(
      argc, argv, loom::train::sft_schema(),
      {"loom-sft",
       "Pre-train on raw text (loss on every token) or fine-tune on prompt/completion data (loss on completions)",
       {"loom-sft --config configs/tiny-brown.yaml",
        "loom-sft --config configs/tiny-brown.yaml run_dir=runs/smoke train.max_steps=30",
        "loom-sft --config configs/tiny-wordnet-sft.yaml --print-config"}},
      loom::train::run_sft);
}
