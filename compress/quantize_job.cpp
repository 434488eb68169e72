#include "compress/quantize_job.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "compress/calibration.h"
#include "compress/layer_pass.h"
#include "io/record/progress.h"
#include "io/record/run_record.h"
#include "io/weights/model_weights.h"
#include "io/weights/quantized_weights.h"
#include "launch/mpi_runtime.h"
#include "launch/stop_signal.h"

namespace loom::compress {
namespace {

namespace fs = std::filesystem;
using launch::GroupAxis;

std::string layer_name(std::int64_t layer) {
  std::ostringstream s;
  s << "layer-" << std::setw(4) << std::setfill('0') << layer;
  return s.str();
}

fs::path slice_file(const fs::path& progress, std::int64_t layer, int tp_rank) {
  return progress / (layer_name(layer) + ".tp" + std::to_string(tp_rank) + ".h5");
}

fs::path done_file(const fs::path& progress, std::int64_t layer) { return progress / (layer_name(layer) + ".done"); }

// What makes two runs the same job: a resumed run must agree on all of it.
nlohmann::json job_identity(const JobOptions& o, const eval::EvalModel& source, const train::Engine& engine) {
  return {{"spec", o.spec.to_json()},
          {"calibration",
           {{"data", o.calibration.data.string()},
            {"samples", o.calibration.samples},
            {"seq_len", o.calibration.seq_len},
            {"seed", o.calibration.seed},
            {"batch_rows", o.calibration.batch_rows}}},
          {"model", {{"path", source.path.string()}, {"step", source.step}}},
          {"model_config", io::model_config_json(engine.config())},
          {"tp", engine.groups().tp_size()}};
}

std::string first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& at = "") {
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      if (!b.contains(key)) return at + key + " (missing in the stored job)";
      const std::string d = first_difference(value, b.at(key), at + key + ".");
      if (!d.empty()) return d;
    }
    return "";
  }
  return a == b ? "" : at.substr(0, at.empty() ? 0 : at.size() - 1) + ": now " + a.dump() + ", stored " + b.dump();
}

// Committed layers 0 .. n-1 of this job (the first gap ends the count).
std::int64_t committed_layers(const fs::path& progress, const nlohmann::json& identity, std::int64_t layers) {
  std::int64_t n = 0;
  for (; n < layers; ++n) {
    const fs::path done = done_file(progress, n);
    if (!fs::exists(done)) break;
    std::ifstream in(done);
    nlohmann::json stored;
    try {
      stored = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(done.string() + ": not valid JSON (" + e.what() + "); delete the progress directory " +
                               progress.string() + " to start over");
    }
    const std::string diff = first_difference(identity, stored.at("job"));
    if (!diff.empty()) {
      throw std::runtime_error(progress.string() + " holds layers of a different job (" + diff +
                               "): choose another out directory or delete it");
    }
  }
  return n;
}

std::vector<Tensor> embed_calibration(train::Engine& engine, const CalibrationSet& set, std::int64_t batch_rows) {
  model::Transformer& model = engine.model();
  std::vector<Tensor> hidden;
  for (std::int64_t first = 0; first < set.count; first += batch_rows) {
    const std::int64_t b = std::min(batch_rows, set.count - first);
    Tensor ids = Tensor::empty({b, set.seq_len}, DType::I32);
    std::copy_n(set.tokens.data() + first * set.seq_len, b * set.seq_len, ids.data<std::int32_t>());
    const Tensor& h = model.embed_forward(ids);
    Tensor copy = Tensor::empty(h.shape());
    std::copy_n(h.data<float>(), h.numel(), copy.data<float>());
    hidden.push_back(std::move(copy));
  }
  return hidden;
}

// This rank's slice of layer `layer`: its parameters and compressed linears.
void save_slice(const fs::path& file, train::Engine& engine, std::int64_t layer, const LayerOutcome& outcome) {
  const model::ParameterSet& params = engine.model().params();
  io::QuantizedModel slice;
  slice.metadata = {{"layer", layer}, {"tp_rank", engine.groups().tp_rank()}, {"tp_size", engine.groups().tp_size()}};
  const std::string prefix = "layers." + std::to_string(layer) + ".";
  for (const model::ParameterEntry& e : params.entries()) {
    if (e.name.rfind(prefix, 0) == 0) slice.dense.push_back({e.name, params.value(e)});
  }
  for (const LinearOutcome& l : outcome.linears) {
    io::CompressedLinear c;
    c.prefix = prefix + LayerCompressor::parameter_prefix(l.name);
    const Tensor w = params.value(c.prefix + ".weight");
    c.rows = w.dim(0), c.cols = w.dim(1);
    c.quantized = l.quantized;
    if (!l.keep.empty()) c.mask = io::pack_mask(l.keep.data(), c.rows, c.cols);
    slice.linears.push_back(std::move(c));
  }
  io::save_quantized_model(file, slice);
}

void load_slice(const fs::path& file, train::Engine& engine) {
  const io::QuantizedModel slice = io::load_quantized_model(file);
  model::ParameterSet& params = engine.model().params();
  for (const io::NamedTensor& t : slice.dense) {
    Tensor mine = params.value(t.name);
    if (mine.numel() != t.tensor.numel()) {
      throw std::runtime_error(file.string() + ": " + t.name + " has " + std::to_string(t.tensor.numel()) +
                               " elements, this rank's slice " + std::to_string(mine.numel()));
    }
    std::copy_n(t.tensor.data<float>(), t.tensor.numel(), mine.data<float>());
  }
}

// World rank 0: the whole model from the gathered parameters and every tp slice's codes.
io::QuantizedModel assemble(const model::Transformer& whole, const fs::path& progress, int tp_size,
                            const nlohmann::json& metadata) {
  const model::ModelConfig& config = whole.config();
  io::QuantizedModel m;
  m.metadata = metadata;
  std::vector<std::vector<model::ParameterSpec>> specs;
  for (int t = 0; t < tp_size; ++t) {
    model::ShardSpec shard{0, config.n_layers, t, tp_size};
    specs.push_back(model::parameter_specs(config, shard.resolved(config), whole.head_kind()));
  }
  auto spec_of = [&](int t, const std::string& name) -> const model::ParameterSpec& {
    for (const model::ParameterSpec& s : specs[static_cast<std::size_t>(t)])
      if (s.name == name) return s;
    throw std::logic_error("no parameter " + name);
  };
  std::vector<std::string> compressed;  // weights stored as codes
  for (std::int64_t layer = 0; layer < config.n_layers; ++layer) {
    std::vector<io::QuantizedModel> slices;
    for (int t = 0; t < tp_size; ++t) slices.push_back(io::load_quantized_model(slice_file(progress, layer, t)));
    for (std::size_t i = 0; i < slices[0].linears.size(); ++i) {
      const std::string prefix = slices[0].linears[i].prefix, name = prefix + ".weight";
      const Tensor w = whole.params().value(name);
      io::CompressedLinear global;
      global.prefix = prefix, global.rows = w.dim(0), global.cols = w.dim(1);
      std::vector<std::uint8_t> keep;
      for (int t = 0; t < tp_size; ++t) {
        const io::CompressedLinear& part = slices[static_cast<std::size_t>(t)].linears[i];
        const io::LinearSlice where = io::linear_slice(spec_of(t, name), t, tp_size);
        if (part.quantized) {
          if (!global.quantized) {
            global.quantized = quant::QuantizedMatrix::empty(global.rows, global.cols, part.quantized->scheme);
          }
          io::place_quantized(*part.quantized, where, *global.quantized);
        }
        if (!part.mask.empty()) {
          keep.resize(static_cast<std::size_t>(global.rows * global.cols));
          io::place_mask(io::unpack_mask(part.mask, part.rows, part.cols), where, global.cols, keep);
        }
      }
      if (!keep.empty()) global.mask = io::pack_mask(keep.data(), global.rows, global.cols);
      if (global.quantized) compressed.push_back(name);
      m.linears.push_back(std::move(global));
    }
  }
  for (const model::ParameterEntry& e : whole.params().entries()) {
    if (std::find(compressed.begin(), compressed.end(), e.name) != compressed.end()) continue;
    m.dense.push_back({e.name, whole.params().value(e)});
  }
  return m;
}

}  // namespace

JobResult run_quantize_job(train::Engine& engine, Backend& backend, const eval::EvalModel& source,
                           const JobOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const launch::ProcessGroups& groups = engine.groups();
  const bool leader = engine.leader();
  const model::ModelConfig& config = engine.config();
  const fs::path progress = options.out / "progress";
  const nlohmann::json identity = job_identity(options, source, engine);
  LayerCompressor compressor(engine, options.spec);

  if (leader) fs::create_directories(progress);
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  const std::int64_t resumed = committed_layers(progress, identity, config.n_layers);

  // Calibration hidden states entering layer 0 (none for methods that need no data).
  std::vector<Tensor> hidden;
  CalibrationSet calibration;
  if (options.spec.needs_calibration()) {
    const std::int64_t seq = options.calibration.seq_len > 0 ? options.calibration.seq_len : config.max_seq_len;
    calibration = load_calibration(options.calibration.data, options.calibration.samples, seq, options.calibration.seed,
                                   config.vocab_size, groups.dp_rank(), groups.dp_size());
    hidden = embed_calibration(engine, calibration, options.calibration.batch_rows);
  }
  if (leader) {
    std::cerr << "loom-quantize: " << options.spec.describe() << " of " << source.path.string() << ", "
              << config.n_layers << " layers, " << engine.describe();
    if (options.spec.needs_calibration()) {
      std::cerr << ", calibration " << calibration.total << " x " << calibration.seq_len << " tokens from "
                << options.calibration.data.string();
    }
    std::cerr << "\n";
    if (resumed > 0) std::cerr << "loom-quantize: resuming after " << resumed << " committed layers in " << progress.string() << "\n";
  }

  nlohmann::json layers = nlohmann::json::array();
  record::Progress bar(config.n_layers, "quantize", {}, resumed);
  for (std::int64_t layer = 0; layer < config.n_layers; ++layer) {
    if (layer < resumed) {
      load_slice(slice_file(progress, layer, groups.tp_rank()), engine);
      compressor.forward(layer, hidden);
      if (leader) {
        std::ifstream in(done_file(progress, layer));
        layers.push_back(nlohmann::json::parse(in).at("outcome"));
      }
      continue;
    }
    const LayerOutcome outcome = compressor.compress(layer, hidden);
    if (groups.dp_rank() == 0) save_slice(slice_file(progress, layer, groups.tp_rank()), engine, layer, outcome);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    if (leader) {
      const nlohmann::json done = {{"job", identity}, {"outcome", outcome.to_json()}};
      record::write_file_atomic(done_file(progress, layer), done.dump(2) + "\n");
      layers.push_back(outcome.to_json());
      bar.update(layer + 1, {{"s/layer", outcome.seconds}});
    }
    if (options.layer_delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(options.layer_delay_s));
    int signal = launch::stop_requested();
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &signal, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (signal != 0 && layer + 1 < config.n_layers) {
      bar.finish();
      JobResult stopped;
      stopped.stopped_by = signal;
      stopped.resumed_layers = resumed;
      return stopped;
    }
  }
  bar.finish();

  // The whole model: parameters gathered to rank 0, codes from every tp slice's file.
  std::unique_ptr<model::Transformer> whole = engine.gather_whole_model(backend);
  JobResult result;
  result.file = options.out / "quantized.h5";
  result.resumed_layers = resumed;
  if (leader) {
    nlohmann::json metadata = {{"model", io::model_config_json(config)},
                               {"quantization", options.spec.to_json()},
                               {"calibration", identity.at("calibration")},
                               {"source", source.to_json()},
                               {"tokenizer", source.tokenizer.string()},
                               {"git_commit", record::git_commit()},
                               {"date", record::utc_now()}};
    result.model = assemble(*whole, progress, groups.tp_size(), metadata);
    io::save_quantized_model(result.file, result.model);
    result.file_bytes = static_cast<std::int64_t>(fs::file_size(result.file));
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.report = {{"quantization", options.spec.to_json()},
                     {"calibration", identity.at("calibration")},
                     {"source", source.to_json()},
                     {"layout", engine.describe()},
                     {"layers", layers},
                     {"resumed_layers", resumed},
                     {"seconds", result.seconds},
                     {"file", result.file.string()},
                     {"file_bytes", result.file_bytes}};
    record::write_file_atomic(options.out / "quantize.json", result.report.dump(2) + "\n");
  }
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  return result;
}

}  // namespace loom::compress
