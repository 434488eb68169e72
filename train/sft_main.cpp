// loom-sft: pre-training on raw text and supervised fine-tuning (see train/sft.h).
#include "io/config/command_line.h"
#include "train/sft.h"

int main(int argc, char** argv) {
  const loom::config::Schema schema = loom::train::sft_schema();
  const loom::config::ProgramInfo info{
      "loom-sft",
      "Pre-train on raw text (loss on every token) or fine-tune on prompt/completion data (loss on completions)",
      {"loom-sft --config configs/tiny-brown.yaml",
       "loom-sft --config configs/tiny-brown.yaml run_dir=runs/smoke train.max_steps=30",
       "loom-sft --config configs/tiny-wordnet-sft.yaml --print-config"}};
  return loom::config::run_main(argc, argv, schema, info, [](const loom::config::CommandLine& cli) {
    return loom::train::run_sft(cli.config);
  });
}
