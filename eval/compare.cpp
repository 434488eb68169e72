#include "eval/compare.h"

#include <fstream>
#include <iostream>
#include <stdexcept>

#include "eval/compare_gate.h"
#include "eval/compare_results.h"

namespace loom::eval {
namespace fs = std::filesystem;

namespace {

constexpr int exit_regression = 1;
constexpr int exit_bad_input = 2;

void write_file(const fs::path& file, const std::string& text) {
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  std::ofstream out(file);
  out << text;
  out.close();
  if (!out) throw std::runtime_error(file.string() + ": cannot write the markdown report");
}

}  // namespace

int compare_main(const CompareOptions& options, std::ostream& out, std::ostream& err) {
  const auto bad_input = [&](const std::string& message) {
    err << "loom-eval compare: " << message << '\n';
    return exit_bad_input;
  };
  if (options.files.size() < 2)
    return bad_input("needs a baseline result file and at least one more (got " +
                     std::to_string(options.files.size()) + ")");

  Comparison comparison;
  std::optional<Gate> gate;
  GateReport gate_report;
  try {
    std::vector<ResultFile> files;
    for (const fs::path& file : options.files) files.push_back(load_result_file(file));
    if (options.gate) gate = load_gate(*options.gate);
    comparison = compare_results(std::move(files), options.metrics);
    if (gate) gate_report = check_gate(comparison, *gate, options.metrics);
  } catch (const std::exception& error) {
    return bad_input(error.what());
  }

  std::string report = render_markdown(comparison);
  out << report;
  if (gate) {
    const std::string gate_text = render_gate_report(comparison, *gate, gate_report);
    out << '\n' << gate_text;
    report += "\n## Gate\n\n```\n" + gate_text + "```\n";
  }
  out.flush();

  try {
    if (options.markdown) write_file(*options.markdown, report);
    if (options.plot)
      plot_results(comparison.files, {*options.plot, options.x, options.metrics, options.gnuplot});
  } catch (const std::exception& error) {
    return bad_input(error.what());
  }
  if (options.plot) out << "plot: " << options.plot->string() << '\n';
  return gate && !gate_report.passed() ? exit_regression : 0;
}

int compare_main(const CompareOptions& options) { return compare_main(options, std::cout, std::cerr); }

}  // namespace loom::eval
