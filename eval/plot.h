// `loom-eval compare --plot out.png`: metrics of several result files over training steps
// (model.step) or over nights (run.date), drawn by gnuplot (Debian: gnuplot-nox).
//
// Files are sorted by x (ties keep their command-line order). Up to six task/metrics get one
// panel each, in their own units, with ±stderr error bars where the files give them; more
// share one panel, each line divided by its first finite value so that different units fit.
// NaN/inf values and metrics a file lacks are skipped (the line joins the neighbouring points);
// a metric without any finite value is left out and named in the title. The gnuplot script and data file are written to a
// fresh temporary directory, removed after success and kept (and named in the error) after a
// failure. The pngcairo terminal is used when gnuplot has it, else png.
//
// Errors: std::runtime_error for a missing gnuplot, a file without a step (step axis) or a
// readable date (date axis), nothing finite to plot, or gnuplot failing (its messages quoted).
// Thread safety: reentrant; runs one child process.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "eval/compare_results.h"

namespace loom::eval {

enum class PlotAxis { step, date };

struct PlotOptions {
  std::filesystem::path output;        // the PNG to write
  PlotAxis x = PlotAxis::step;
  std::vector<std::string> metrics;    // metric_selected filters; empty: every metric
  std::string gnuplot = "gnuplot";     // program name (searched on PATH) or path
  int max_panels = 6;                  // more metrics than this share one normalised panel
};

void plot_results(const std::vector<ResultFile>& files, const PlotOptions& options);

// The full path of `program` (a path, or a name searched on PATH), or "" when not found.
std::filesystem::path find_program(const std::string& program);

}  // namespace loom::eval
