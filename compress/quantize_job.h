// A loom-quantize job: calibration, the layers in sequence (compress/layer_pass.h), a commit
// after every layer so that a killed job resumes at the layer it reached, and the final
// quantized model file (io/weights/quantized_weights.h) assembled from the tp slices.
//
// On disk, under `out`:
//   progress/layer-NNNN.tpR.h5   tp rank R's slice of layer NNNN after compression: every
//                                parameter of the layer and its codes or masks (the
//                                quantized-file format, local shapes); written by dp rank 0
//   progress/layer-NNNN.done     JSON {job, layer, seconds, linears}: the commit, written by
//                                world rank 0 after every slice is on disk
//   quantized.h5                 the whole compressed model
//   quantize.json                the report: settings, per-layer times and losses, sizes
// A restart with the same job (settings, calibration, model, tp) loads the committed layers,
// replays them over the calibration samples (bit-identical hidden states) and goes on; a
// different job in the same directory is refused with the difference named.
//
// Ranks: run_quantize_job is collective over the engine's world. Threads: the MPI thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "compress/quantize_spec.h"
#include "eval/model_source.h"
#include "io/weights/quantized_weights.h"
#include "train/engine.h"

namespace loom::compress {

struct CalibrationSettings {
  std::filesystem::path data;
  std::int64_t samples = 128;
  std::int64_t seq_len = 0;        // 0: the model's max_seq_len
  std::uint64_t seed = 1234;
  std::int64_t batch_rows = 16;    // samples per forward
};

struct JobOptions {
  QuantizeSpec spec;
  CalibrationSettings calibration;
  std::filesystem::path out;
  double layer_delay_s = 0.0;      // fault injection: sleep after each committed layer
};

struct JobResult {
  std::filesystem::path file;      // out/quantized.h5 (world rank 0 wrote it)
  std::int64_t resumed_layers = 0;
  double seconds = 0.0;
  std::int64_t file_bytes = 0;
  nlohmann::json report;           // what quantize.json holds
  io::QuantizedModel model;        // what quantized.h5 holds (world rank 0 only; empty elsewhere)
  int stopped_by = 0;              // a stop signal (SIGTERM, SIGUSR1, SIGINT) ended the job after a commit
};

// Compresses the model loaded in `engine` (from `source`). Returns on every rank. A stop
// signal on any rank ends every rank after the next committed layer (stopped_by set, no
// quantized.h5): the same command resumes there.
JobResult run_quantize_job(train::Engine& engine, Backend& backend, const eval::EvalModel& source,
                           const JobOptions& options);

}  // namespace loom::compress
