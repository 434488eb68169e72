// loom-eval compare on real result files in a temporary directory: the table's numbers and
// words, the gate's exit codes and messages, and the gnuplot PNG.
#define BOOST_TEST_MODULE eval_compare
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/compare.h"
#include "eval/compare_cli.h"
#include "eval/compare_gate.h"
#include "eval/compare_results.h"
#include "eval/plot.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace loom::eval;

namespace {

struct Scratch {
  fs::path dir;
  Scratch() {
    std::string pattern = (fs::temp_directory_path() / "loom-compare-test-XXXXXX").string();
    dir = mkdtemp(pattern.data());
  }
  ~Scratch() { fs::remove_all(dir); }

  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
};

json metric(json value, json standard_error, bool higher_is_better) {
  return {{"value", value}, {"stderr", standard_error}, {"higher_is_better", higher_is_better}};
}

// A result file as loom-eval writes it, with the tasks' metrics given.
std::string results(long step, const std::string& date, const json& tasks) {
  json root = {{"format", "loom-eval-results/1"},
               {"model", {{"path", "runs/tiny/checkpoints/step-" + std::to_string(step)}, {"step", step}, {"kind", "checkpoint"}}},
               {"run", {{"git_commit", "0123abc"}, {"date", date}, {"host", "node1"}, {"ranks", 1}}},
               {"config", json::object()},
               {"tasks", json::object()}};
  for (const auto& [task, metrics] : tasks.items())
    root["tasks"][task] = {{"type", "perplexity"}, {"samples", 40}, {"config", json::object()}, {"metrics", metrics}};
  return root.dump(2);
}

json baseline_tasks() {
  return {{"brown-heldout", {{"word_perplexity", metric(120.0, 3.0, false)}, {"bits_per_byte", metric(1.9, 0.02, false)}}},
          {"wordnet-definition-mc", {{"acc", metric(0.5, 0.03, true)}, {"acc_norm", metric(0.44, 0.035, true)}}}};
}

// word_perplexity 120 ± 3 → 110 ± 4: Δ -10, z = -10/5 = -2; acc 0.5 ± 0.03 → 0.402 ± 0.04:
// Δ -0.098, z = -0.098/0.05 = -1.96. bits_per_byte has no stderr; acc_norm is missing.
json later_tasks() {
  return {{"brown-heldout", {{"word_perplexity", metric(110.0, 4.0, false)}, {"bits_per_byte", metric(1.95, nullptr, false)}}},
          {"wordnet-definition-mc", {{"acc", metric(0.402, 0.04, true)}}},
          {"arithmetic", {{"exact_match", metric(0.1, 0.01, true)}}}};
}

struct Run {
  int code;
  std::string out, err;
};

Run run_compare(const CompareOptions& options) {
  std::ostringstream out, err;
  const int code = compare_main(options, out, err);
  return {code, out.str(), err.str()};
}

Run compare(std::vector<fs::path> files, std::optional<fs::path> gate = {}, std::vector<std::string> metrics = {}) {
  CompareOptions options;
  options.files = std::move(files);
  options.gate = std::move(gate);
  options.metrics = std::move(metrics);
  return run_compare(options);
}

CompareOptions plot_options(std::vector<fs::path> files, const fs::path& png, PlotAxis x = PlotAxis::step) {
  CompareOptions options;
  options.files = std::move(files);
  options.plot = png;
  options.x = x;
  return options;
}

const MetricDelta& delta_of(const Comparison& comparison, const std::string& key, std::size_t later = 0) {
  for (const ComparisonRow& row : comparison.rows)
    if (row.key == key) return row.deltas.at(later);
  BOOST_FAIL("no row " + key);
  throw;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool is_png(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in.gcount() == 8 && std::string(magic, 8) == std::string("\x89PNG\r\n\x1a\n", 8);
}

}  // namespace

BOOST_AUTO_TEST_CASE(table_deltas_p_values_and_words) {
  Scratch s;
  const fs::path base = s.write("base.json", results(100, "2026-11-20T02:00:00Z", baseline_tasks()));
  const fs::path later = s.write("new.json", results(200, "2026-11-21T02:00:00Z", later_tasks()));
  const Comparison c = compare_results({load_result_file(base), load_result_file(later)}, {});
  BOOST_TEST(c.rows.size() == 4u);

  const MetricDelta& ppl = delta_of(c, "brown-heldout/word_perplexity");
  BOOST_TEST(ppl.delta == -10.0);
  BOOST_TEST(*ppl.p_value == 0.04550026389635844, boost::test_tools::tolerance(1e-12));  // erfc(2/√2)
  BOOST_TEST(ppl.significant);
  BOOST_TEST(ppl.direction == 1);  // perplexity fell: better

  const MetricDelta& acc = delta_of(c, "wordnet-definition-mc/acc");
  BOOST_TEST(acc.delta == -0.098, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(*acc.p_value == 0.04999579029644087, boost::test_tools::tolerance(1e-9));  // erfc(1.96/√2)
  BOOST_TEST(acc.direction == -1);

  const MetricDelta& bpb = delta_of(c, "brown-heldout/bits_per_byte");
  BOOST_TEST(!bpb.p_value.has_value());
  BOOST_TEST(bpb.direction == -1);
  BOOST_TEST(!delta_of(c, "wordnet-definition-mc/acc_norm").present);
  BOOST_TEST(c.not_in_baseline.count("arithmetic/exact_match") == 1u);

  const std::string table = render_markdown(c);
  BOOST_TEST(contains(table, "| brown-heldout/word_perplexity | 120 ± 3 | 110 | -10 | 0.0455 * | ↑ better |"));
  BOOST_TEST(contains(table, "| wordnet-definition-mc/acc | 0.5 ± 0.03 | 0.402 | -0.098 | 0.05 * | ↓ worse |"));
  BOOST_TEST(contains(table, "| brown-heldout/bits_per_byte | 1.9 ± 0.02 | 1.95 | +0.05 | n/a | ↓ worse |"));
  BOOST_TEST(contains(table, "| wordnet-definition-mc/acc_norm | 0.44 ± 0.035 | — | — | — | — |"));
  BOOST_TEST(contains(table, "`" + base.string() + "`: model `runs/tiny/checkpoints/step-100` (checkpoint), step 100, 2026-11-20T02:00:00Z"));
  BOOST_TEST(contains(table, "Not in the baseline (not compared): arithmetic/exact_match (B)"));
}

BOOST_AUTO_TEST_CASE(table_keeps_file_order_restricts_metrics_and_survives_nan) {
  Scratch s;
  json nan_tasks = baseline_tasks();
  nan_tasks["brown-heldout"]["word_perplexity"] = metric(nullptr, nullptr, false);  // loom-eval writes NaN as null
  nan_tasks["wordnet-definition-mc"]["acc"] = metric("inf", 0.01, true);
  const fs::path base = s.write("base.json", results(100, "2026-11-20T02:00:00Z", baseline_tasks()));
  const fs::path c_file = s.write("c.json", results(300, "2026-11-22T02:00:00Z", nan_tasks));
  const fs::path b_file = s.write("b.json", results(200, "2026-11-21T02:00:00Z", later_tasks()));
  const Run run = compare({base, c_file, b_file}, {}, {"brown-heldout", "wordnet-definition-mc/acc"});
  BOOST_TEST(run.code == 0);
  BOOST_TEST(contains(run.out, "B: `" + c_file.string()));
  BOOST_TEST(contains(run.out, "C: `" + b_file.string()));
  BOOST_TEST(contains(run.out, "| brown-heldout/word_perplexity | 120 ± 3 | nan | nan | n/a | n/a | 110 | -10 |"));
  BOOST_TEST(contains(run.out, "| wordnet-definition-mc/acc | 0.5 ± 0.03 | inf | +inf | n/a | ↑ better |"));
  BOOST_TEST(!contains(run.out, "acc_norm"));
  BOOST_TEST(!contains(run.out, "arithmetic"));

  const Run unknown = compare({base, b_file}, {}, {"brown-heldout/no_such_metric"});
  BOOST_TEST(unknown.code == 2);
  BOOST_TEST(contains(unknown.err, "brown-heldout/no_such_metric"));
}

BOOST_AUTO_TEST_CASE(gate_absolute_and_relative_thresholds) {
  Scratch s;
  const fs::path base = s.write("base.json", results(100, "2026-11-20T02:00:00Z", baseline_tasks()));
  json worse = later_tasks();
  worse["brown-heldout"]["word_perplexity"] = metric(130.0, 4.0, false);  // +10 = 8.3% worse
  const fs::path later = s.write("new.json", results(200, "2026-11-21T02:00:00Z", worse));

  const fs::path tight_acc = s.write("a1.yaml", "metrics:\n  wordnet-definition-mc/acc: {max_regression: 0.05}\n");
  const Run acc_fail = compare({base, later}, tight_acc);
  BOOST_TEST(acc_fail.code == 1);
  BOOST_TEST(contains(acc_fail.out, "GATE VIOLATION wordnet-definition-mc/acc: B (" + later.string() +
                                        ") vs baseline A (" + base.string() + "): baseline 0.5, new 0.402, regression 0.098"));
  BOOST_TEST(contains(acc_fail.out, "> allowed 0.05 (0.05, " + tight_acc.string() + ":2)"));
  BOOST_TEST(contains(acc_fail.out, "gate FAILED: 1 violation(s), 1 metric comparison(s)"));

  const fs::path loose_acc = s.write("a2.yaml", "metrics:\n  wordnet-definition-mc/acc: {max_regression: 0.1}\n");
  BOOST_TEST(compare({base, later}, loose_acc).code == 0);

  const fs::path tight_ppl = s.write("r1.yaml", "metrics:\n  brown-heldout/word_perplexity: {max_regression: 5%}\n");
  const Run ppl_fail = compare({base, later}, tight_ppl);
  BOOST_TEST(ppl_fail.code == 1);
  BOOST_TEST(contains(ppl_fail.out, "regression 10 (8.33%) > allowed 6 (5% of the baseline"));

  const fs::path loose_ppl = s.write("r2.yaml", "metrics:\n  brown-heldout/word_perplexity: {max_regression: 10%}\n");
  const Run ppl_pass = compare({base, later}, loose_ppl);
  BOOST_TEST(ppl_pass.code == 0);
  BOOST_TEST(contains(ppl_pass.out, "gate PASSED"));

  // The default gates every metric; acc_norm is missing from the later file: a note, not a failure.
  const fs::path by_default = s.write("d.yaml", "default: {max_regression: 10%}\n");
  const Run defaulted = compare({base, later}, by_default);
  BOOST_TEST(defaulted.code == 1);  // acc fell by 19.6%
  BOOST_TEST(contains(defaulted.out, "wordnet-definition-mc/acc_norm: not in B"));
  // Named explicitly, a metric the later file lacks fails.
  const fs::path named = s.write("n.yaml", "metrics:\n  wordnet-definition-mc/acc_norm: {max_regression: 1}\n");
  const Run missing = compare({base, later}, named);
  BOOST_TEST(missing.code == 1);
  BOOST_TEST(contains(missing.out, "the metric is missing"));
}

BOOST_AUTO_TEST_CASE(gate_require_significance_passes_a_small_noisy_drop) {
  Scratch s;
  json base_tasks = {{"wordnet-definition-mc", {{"acc", metric(0.5, 0.05, true)}}}};
  json drop_tasks = {{"wordnet-definition-mc", {{"acc", metric(0.47, 0.05, true)}}}};  // p = 0.671
  const fs::path base = s.write("base.json", results(100, "2026-11-20T02:00:00Z", base_tasks));
  const fs::path later = s.write("new.json", results(200, "2026-11-21T02:00:00Z", drop_tasks));
  const std::string thresholds = "metrics:\n  wordnet-definition-mc/acc: {max_regression: 0.02}\n";
  const fs::path strict = s.write("strict.yaml", thresholds + "require_significance: false\n");
  const fs::path lenient = s.write("lenient.yaml", thresholds + "require_significance: true\n");
  BOOST_TEST(compare({base, later}, strict).code == 1);
  const Run run = compare({base, later}, lenient);
  BOOST_TEST(run.code == 0);
  BOOST_TEST(contains(run.out, "but not significantly (p 0.6714); passed"));

  // Without a stderr nothing shows the drop to be noise: it still fails.
  drop_tasks["wordnet-definition-mc"]["acc"] = metric(0.47, nullptr, true);
  const fs::path unknown_error = s.write("new2.json", results(200, "2026-11-21T02:00:00Z", drop_tasks));
  BOOST_TEST(compare({base, unknown_error}, lenient).code == 1);
}

BOOST_AUTO_TEST_CASE(bad_gate_files_exit_2_with_the_line) {
  Scratch s;
  const fs::path base = s.write("base.json", results(100, "2026-11-20T02:00:00Z", baseline_tasks()));
  const fs::path later = s.write("new.json", results(200, "2026-11-21T02:00:00Z", later_tasks()));
  const auto expect_error = [&](const std::string& yaml, const std::string& message) {
    const fs::path gate = s.write("gate.yaml", yaml);
    const Run run = compare({base, later}, gate);
    BOOST_TEST(run.code == 2);
    BOOST_TEST(contains(run.err, gate.string() + message), run.err);
    BOOST_TEST(run.out.empty());
  };
  expect_error("# header\ndefault: {max_regression: 0.02}\nrequire_signifcance: true\n",
               ":3: unknown key 'require_signifcance'");
  expect_error("metrics:\n  wordnet-definition-mc/acc: {max_regression: 0.02}\n  brown-heldout/word_perplexity: {max_regresion: 5%}\n",
               ":3: metrics.brown-heldout/word_perplexity: unknown key 'max_regresion' (expected max_regression)");
  expect_error("metrics:\n  wordnet-definition-mc/acc:\n    max_regression: lots\n",
               ":3: metrics.wordnet-definition-mc/acc.max_regression: expected a non-negative number");
  expect_error("default: {max_regression: -0.1}\n", ":1: default.max_regression: expected a non-negative number");
  expect_error("require_significance: maybe\n", ":1: require_significance: expected true or false, got 'maybe'");
  expect_error("metrics:\n  nosuchtask/acc: {max_regression: 0.1}\n", ":2: metrics: 'nosuchtask/acc' is in no result file");
  expect_error("metrics:\n  acc: {max_regression: 0.1}\n", ":2: metrics: 'acc' is not a task/metric name");
  expect_error("metrics: [1, 2\n", ":");  // a YAML syntax error
  BOOST_TEST(compare({base, later}, s.dir / "absent.yaml").code == 2);
}

BOOST_AUTO_TEST_CASE(malformed_result_files_exit_2_naming_file_and_key) {
  Scratch s;
  const fs::path base = s.write("base.json", results(100, "2026-11-20T02:00:00Z", baseline_tasks()));
  const fs::path broken = s.write("broken.json", "{\"format\": \"loom-eval-results/1\", \"tasks\": {");
  Run run = compare({base, broken});
  BOOST_TEST(run.code == 2);
  BOOST_TEST(contains(run.err, broken.string() + ": not valid JSON"), run.err);

  json wrong = json::parse(results(200, "2026-11-21T02:00:00Z", later_tasks()));
  wrong["tasks"]["wordnet-definition-mc"]["metrics"]["acc"]["value"] = "high";
  const fs::path bad_value = s.write("bad-value.json", wrong.dump());
  run = compare({base, bad_value});
  BOOST_TEST(run.code == 2);
  BOOST_TEST(contains(run.err, bad_value.string() + ": tasks.wordnet-definition-mc.metrics.acc.value: expected a number"), run.err);

  wrong = json::parse(results(200, "2026-11-21T02:00:00Z", later_tasks()));
  wrong.erase("tasks");
  const fs::path no_tasks = s.write("no-tasks.json", wrong.dump());
  run = compare({base, no_tasks});
  BOOST_TEST(contains(run.err, no_tasks.string() + ": tasks: missing"), run.err);

  run = compare({base, s.dir / "absent.json"});
  BOOST_TEST(run.code == 2);
  BOOST_TEST(contains(run.err, "absent.json: cannot open"));
  BOOST_TEST(compare({base}).code == 2);
}

BOOST_AUTO_TEST_CASE(plot_over_steps_and_dates) {
  Scratch s;
  json third = later_tasks();
  third["brown-heldout"]["word_perplexity"] = metric(nullptr, nullptr, false);  // a gap, not a crash
  // Given out of order: the plot sorts by step (and by date).
  const fs::path f300 = s.write("s300.json", results(300, "2026-11-22T02:00:00Z", third));
  const fs::path f100 = s.write("s100.json", results(100, "2026-11-20T02:00:00Z", baseline_tasks()));
  const fs::path f200 = s.write("s200.json", results(200, "2026-11-21T02:00:00.5+01:00", later_tasks()));
  const Run steps = run_compare(plot_options({f100, f300, f200}, s.dir / "steps.png"));
  BOOST_TEST(steps.code == 0, steps.err);
  BOOST_TEST(is_png(s.dir / "steps.png"));

  const Run dates = run_compare(plot_options({f300, f100, f200}, s.dir / "out" / "dates.png", PlotAxis::date));
  BOOST_TEST(dates.code == 0, dates.err);
  BOOST_TEST(is_png(s.dir / "out" / "dates.png"));
  BOOST_TEST(fs::file_size(s.dir / "out" / "dates.png") > 1000u);

  // More metrics than panels: one shared, normalised panel.
  std::vector<ResultFile> loaded = {load_result_file(f100), load_result_file(f200), load_result_file(f300)};
  PlotOptions shared;
  shared.output = s.dir / "shared.png";
  shared.max_panels = 2;
  plot_results(loaded, shared);
  BOOST_TEST(is_png(s.dir / "shared.png"));

  CompareOptions without_gnuplot = plot_options({f100, f200}, s.dir / "x.png");
  without_gnuplot.gnuplot = "no-such-gnuplot-here";
  const Run no_gnuplot = run_compare(without_gnuplot);
  BOOST_TEST(no_gnuplot.code == 2);
  BOOST_TEST(contains(no_gnuplot.err, "gnuplot-nox"));

  json unknown_step = json::parse(results(0, "2026-11-21T02:00:00Z", later_tasks()));
  unknown_step["model"]["step"] = -1;
  const fs::path weights = s.write("weights.json", unknown_step.dump());
  const Run no_step = run_compare(plot_options({f100, weights}, s.dir / "y.png"));
  BOOST_TEST(no_step.code == 2);
  BOOST_TEST(contains(no_step.err, weights.string() + ": model.step is unknown"));
}

BOOST_AUTO_TEST_CASE(iso8601_dates) {
  BOOST_TEST(parse_iso8601_seconds("1970-01-02T00:00:00Z") == 86400.0);
  BOOST_TEST(parse_iso8601_seconds("2026-11-21T19:30:00.25Z") - parse_iso8601_seconds("2026-11-21T19:30:00Z") == 0.25);
  BOOST_TEST(parse_iso8601_seconds("2026-11-21T20:30:00+01:00") == parse_iso8601_seconds("2026-11-21T19:30:00Z"));
  BOOST_CHECK_THROW(parse_iso8601_seconds("21/11/2026"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(command_line_writes_markdown_and_rejects_bad_flags) {
  Scratch s;
  const fs::path base = s.write("base.json", results(100, "2026-11-20T02:00:00Z", baseline_tasks()));
  const fs::path later = s.write("new.json", results(200, "2026-11-21T02:00:00Z", later_tasks()));
  const fs::path gate = s.write("gate.yaml", "metrics:\n  wordnet-definition-mc/acc: {max_regression: 0.05}\n");
  const fs::path markdown = s.dir / "report.md";
  std::vector<std::string> args = {"compare", base.string(), later.string(), "--gate", gate.string(),
                                   "--markdown", markdown.string(), "--metrics", "wordnet-definition-mc/acc,brown-heldout"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  BOOST_TEST(compare_command(static_cast<int>(argv.size()), argv.data()) == 1);
  std::ifstream in(markdown);
  std::stringstream text;
  text << in.rdbuf();
  BOOST_TEST(contains(text.str(), "| wordnet-definition-mc/acc | 0.5 ± 0.03 | 0.402 | -0.098 |"));
  BOOST_TEST(contains(text.str(), "## Gate"));
  BOOST_TEST(!contains(text.str(), "acc_norm"));

  std::vector<std::string> bad = {"compare", base.string(), later.string(), "--x", "epoch"};
  std::vector<char*> bad_argv;
  for (std::string& a : bad) bad_argv.push_back(a.data());
  BOOST_TEST(compare_command(static_cast<int>(bad_argv.size()), bad_argv.data()) == 2);
}
