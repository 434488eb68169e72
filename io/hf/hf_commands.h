// The Hugging Face subcommands of loom-ckpt, one function each so that the loom-ckpt
// dispatcher (io/checkpoint/ckpt_main.cpp) can run them:
//
//   loom-ckpt export --from MODEL --out DIR [--dtype f32|bf16]
//       MODEL: a model.h5, a checkpoint step directory or its view.h5 (loom_model_file.h);
//       writes DIR/model.safetensors + DIR/config.json (hf_convert.h)
//   loom-ckpt import --from DIR --out model.h5
//       a Hugging Face Llama or GPT-2 directory to a model.h5 for train.init_from
//   loom-ckpt logits --model MODEL --tokens 1,2,3 [--out logits.h5]
//       runs the model on the CPU and prints (and optionally writes) its logits (logits.h)
//
// Calling convention: argv[0] is the subcommand's name and argv[1..] its options (a
// dispatcher passes argc - 1, argv + 1). Each parses with CLI11 and has --help.
// Returns the process exit code: 0 success (and --help), 1 when the work fails (the
// message names the file and tensor or key at fault), 2 for a bad command line.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace loom::io::hf {

int hf_export_command(int argc, char** argv);
int hf_import_command(int argc, char** argv);
int logits_command(int argc, char** argv);

// Parses argv with `app` (--help prints and returns 0; a bad command line returns 2), then
// runs `work`; an exception from it is printed as "<app name>: error: <what>" and returns 1.
// Shared by every loom-ckpt subcommand.
int run_command(CLI::App& app, int argc, char** argv, const std::function<void()>& work);

}  // namespace loom::io::hf
