// `loom-eval compare BASE.json NEW.json [MORE.json …]`: the run-to-run comparison of result
// files and the regression gate of nightly evaluation jobs.
//
//   table   always printed to stdout (markdown; --markdown also writes it to a file): one row
//           per task/metric of the baseline, and per later file its value, delta, two-sided z
//           test p-value (* below 0.05) and better/worse (eval/compare_results.h)
//   gate    --gate gate.yaml: every later file against the baseline (eval/compare_gate.h)
//   plot    --plot out.png [--x step|date]: metrics over model.step or run.date (eval/plot.h)
//
// Exit codes, relied on by the Slurm nightly job (slurm/):
//   0  no gate, or every gated metric within its limit
//   1  a regression past a gate threshold (each violation is printed)
//   2  bad input: fewer than two files, a missing or malformed result file (named with the
//      JSON key), a bad gate file (named with the line), a gate or --metrics entry that no
//      file has, an unusable plot axis, a missing gnuplot or a failed plot. Bad input wins
//      over a regression.
//
// Thread safety: reentrant; writes only the requested output files (and a temporary plot
// directory).
#pragma once

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "eval/plot.h"

namespace loom::eval {

struct CompareOptions {
  std::vector<std::filesystem::path> files;           // the baseline first, then the later files
  std::optional<std::filesystem::path> gate;          // thresholds; none: report only
  std::optional<std::filesystem::path> markdown;      // also write the table (and gate report) here
  std::optional<std::filesystem::path> plot;          // PNG of the metrics over x
  PlotAxis x = PlotAxis::step;
  std::vector<std::string> metrics;                   // task/metric or task entries; empty: all
  std::string gnuplot = "gnuplot";                    // program for --plot
};

// Prints the table and gate report to `out`, errors to `err`; returns the exit code above.
int compare_main(const CompareOptions& options, std::ostream& out, std::ostream& err);

// The same on std::cout and std::cerr.
int compare_main(const CompareOptions& options);

}  // namespace loom::eval
