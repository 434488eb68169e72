#include "eval/compare_cli.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <string>

#include "eval/compare.h"

namespace loom::eval {

int compare_command(int argc, char** argv) {
  CLI::App app{"Compare loom-eval result files: a markdown table of metric deltas against the first (baseline) file "
               "with z-test p-values, an optional PNG plot over steps or nights (gnuplot), and a gate that exits 1 "
               "when a metric regressed past its threshold (0: fine, 2: bad input)",
               "loom-eval compare"};
  CompareOptions options;
  std::string x = "step", gate, markdown, plot, metrics;
  app.add_option("files", options.files, "BASELINE.json NEW.json [MORE.json ...]")->required()->expected(2, -1);
  app.add_option("--gate", gate, "Gate YAML: the largest regression allowed per task/metric (configs/eval/gate.yaml)");
  app.add_option("--markdown", markdown, "Also write the table (and the gate report) to this file");
  app.add_option("--plot", plot, "Write a PNG of the metrics over the files' steps or dates");
  app.add_option("--x", x, "Plot axis: step (model.step) or date (run.date, for nightly runs)")
      ->check(CLI::IsMember({"step", "date"}))
      ->capture_default_str();
  app.add_option("--metrics", metrics, "Comma-separated task/metric or task entries to keep (default: all)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!gate.empty()) options.gate = gate;
  if (!markdown.empty()) options.markdown = markdown;
  if (!plot.empty()) options.plot = plot;
  options.x = x == "date" ? PlotAxis::date : PlotAxis::step;
  for (std::size_t at = 0; !metrics.empty() && at <= metrics.size();) {
    const std::size_t comma = std::min(metrics.find(',', at), metrics.size());
    if (comma > at) options.metrics.push_back(metrics.substr(at, comma - at));
    at = comma + 1;
  }
  return compare_main(options);
}

}  // namespace loom::eval
