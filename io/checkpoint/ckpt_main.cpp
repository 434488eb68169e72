// loom-ckpt: look after step checkpoints and move models in and out of loom.
//
//   loom-ckpt ls RUN_OR_CHECKPOINTS_DIR       committed checkpoints, sizes, the newest, leftovers
//   loom-ckpt verify DIR...                   every shard, piece and checksum; exit 1 if any fails
//   loom-ckpt inspect DIR [--tensors]         step, layout, state, config and tensors of one
//   loom-ckpt export|import|logits ...        Hugging Face interchange (io/hf/hf_commands.h)
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "io/checkpoint/checkpoint.h"
#include "io/hf/hf_commands.h"

namespace {

namespace fs = std::filesystem;
namespace ckpt = loom::io::ckpt;

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(unit == 0 ? 0 : 1) << bytes << " " << units[unit];
  return out.str();
}

std::uintmax_t directory_bytes(const fs::path& dir) {
  std::uintmax_t total = 0;
  std::error_code error;
  for (const auto& entry : fs::recursive_directory_iterator(dir, error)) {
    if (entry.is_regular_file(error)) total += entry.file_size(error);
  }
  return total;
}

// A run directory holds its checkpoints in checkpoints/; accept either.
fs::path checkpoints_root(const fs::path& given) {
  if (fs::exists(given / "checkpoints") && !fs::exists(given / ckpt::kLatestFile)) return given / "checkpoints";
  return given;
}

std::string layout_text(const nlohmann::json& index) {
  if (!index.contains("layout")) return "?";
  const auto& l = index["layout"];
  std::ostringstream out;
  out << "dp " << l.value("dp", 0) << " x tp " << l.value("tp", 0) << " x pp " << l.value("pp", 0)
      << (l.value("zero1", false) ? " zero1" : "");
  return out.str();
}

int ls_command(int argc, char** argv) {
  CLI::App app("List the committed checkpoints of a run (newest first) and any save that never committed",
               "loom-ckpt ls");
  std::string dir;
  app.add_option("DIR", dir, "A run directory or its checkpoints directory")->required();
  return loom::io::hf::run_command(app, argc, argv, [&] {
    const fs::path root = checkpoints_root(dir);
    if (!fs::is_directory(root)) throw std::runtime_error(root.string() + ": no such directory");
    std::string latest;
    if (fs::exists(root / ckpt::kLatestFile)) {
      latest = ckpt::read_text_file(root / ckpt::kLatestFile);
      while (!latest.empty() && (latest.back() == '\n' || latest.back() == ' ')) latest.pop_back();
    }
    std::cout << std::left << std::setw(16) << "checkpoint" << std::setw(10) << "size" << std::setw(8) << "shards"
              << std::setw(26) << "layout" << "tokens\n";
    for (const fs::path& step_dir : ckpt::list_checkpoints(root)) {
      const std::string name = step_dir.filename().string();
      std::cout << std::left << std::setw(16) << name << std::setw(10) << human_bytes(double(directory_bytes(step_dir)));
      try {
        const nlohmann::json index = ckpt::read_index(step_dir);
        std::cout << std::setw(8) << index["shards"].size() << std::setw(26) << layout_text(index)
                  << index["state"].value("tokens", std::int64_t{0});
      } catch (const std::exception& e) {
        std::cout << "INVALID: " << e.what();
      }
      std::cout << (name == latest ? "   <- latest" : "") << "\n";
    }
    for (const auto& entry : fs::directory_iterator(root)) {
      const std::string name = entry.path().filename().string();
      if (entry.is_directory() && name.find(".tmp-") != std::string::npos) {
        std::cout << name << ": a save that never committed (removed by the next resume)\n";
      }
    }
  });
}

int verify_command(int argc, char** argv) {
  CLI::App app("Check every shard, piece and XXH64 checksum of checkpoints; exit 1 if any problem",
               "loom-ckpt verify");
  std::vector<std::string> dirs;
  app.add_option("DIR", dirs, "Checkpoint step directories, or a run / checkpoints directory (all of its)")->required();
  int problems_total = 0;
  const int code = loom::io::hf::run_command(app, argc, argv, [&] {
    for (const std::string& given : dirs) {
      std::vector<fs::path> targets;
      if (fs::exists(fs::path(given) / ckpt::kIndexFile) || ckpt::parse_step_dir(fs::path(given).filename().string())) {
        targets.push_back(given);
      } else {
        targets = ckpt::list_checkpoints(checkpoints_root(given));
        if (targets.empty()) throw std::runtime_error(given + ": no checkpoints found");
      }
      for (const fs::path& target : targets) {
        const auto problems = ckpt::verify_checkpoint(target);
        if (problems.empty()) {
          std::cout << target.string() << ": OK\n";
        } else {
          std::cout << target.string() << ": " << problems.size() << " problem(s)\n";
          for (const auto& problem : problems) std::cout << "  " << problem << "\n";
        }
        problems_total += static_cast<int>(problems.size());
      }
    }
  });
  return code != 0 ? code : (problems_total > 0 ? 1 : 0);
}

int inspect_command(int argc, char** argv) {
  CLI::App app("Show a checkpoint: step, layout, training state, model and (with --tensors) every tensor",
               "loom-ckpt inspect");
  std::string dir;
  bool tensors = false, config = false;
  app.add_option("DIR", dir, "A checkpoint step directory")->required();
  app.add_flag("--tensors", tensors, "List every tensor with its shape and pieces");
  app.add_flag("--config", config, "Print the resolved config that wrote it (JSON)");
  return loom::io::hf::run_command(app, argc, argv, [&] {
    const nlohmann::json index = ckpt::read_index(dir);
    std::cout << "checkpoint  " << dir << " (format " << index["format_version"] << ")\n"
              << "step        " << index["step"] << "\n"
              << "written by  " << index.value("program", std::string("?")) << ", " << index["world_size"]
              << " rank(s): " << layout_text(index) << "\n"
              << "shards      " << index["shards"].size() << ", " << human_bytes(double(directory_bytes(dir))) << "\n";
    if (index.contains("state")) {
      const auto& s = index["state"];
      std::cout << "state       tokens " << s.value("tokens", 0) << ", skipped steps " << s.value("skipped_steps", 0)
                << ", rollbacks " << s.value("rollbacks", 0) << ", optimizer steps " << s.value("optimizer_steps", 0)
                << "\n"
                << "data        " << s.value("loader", nlohmann::json::object()).dump() << "\n";
      if (s.contains("val_loss")) std::cout << "val loss    " << s["val_loss"] << "\n";
    }
    if (index.contains("model_config")) std::cout << "model       " << index["model_config"].dump() << "\n";
    std::cout << "tensors     " << index["tensors"].size() << "\n";
    if (tensors) {
      for (const auto& [name, tensor] : index["tensors"].items()) {
        std::cout << "  " << std::left << std::setw(52) << name << std::setw(16) << tensor["shape"].dump()
                  << tensor["pieces"].size() << " piece(s)\n";
      }
    }
    if (config && index.contains("config")) std::cout << index["config"].dump(2) << "\n";
  });
}

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: loom-ckpt COMMAND [--help] ...\n"
               "  ls DIR              committed checkpoints of a run, newest first\n"
               "  verify DIR...       check shards and checksums (exit 1 on any problem)\n"
               "  inspect DIR         step, layout, state, model, tensors of one checkpoint\n"
               "  export --from M --out DIR   a model.h5 or checkpoint as Hugging Face safetensors + config.json\n"
               "  import --from DIR --out F   a Hugging Face Llama/GPT-2 directory as a loom model.h5\n"
               "  logits --model M --tokens 1,2,3   run a model on the CPU and print its logits\n");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace loom::io::hf;
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "ls") return ls_command(argc - 1, argv + 1);
  if (command == "verify") return verify_command(argc - 1, argv + 1);
  if (command == "inspect") return inspect_command(argc - 1, argv + 1);
  if (command == "export") return hf_export_command(argc - 1, argv + 1);
  if (command == "import") return hf_import_command(argc - 1, argv + 1);
  if (command == "logits") return logits_command(argc - 1, argv + 1);
  if (command == "--help" || command == "-h" || command == "help") {
    usage(stdout);
    return 0;
  }
  if (!command.empty()) std::fprintf(stderr, "loom-ckpt: unknown command \"%s\"\n", command.c_str());
  usage(stderr);
  return 2;
}
