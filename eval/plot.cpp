#include "eval/plot.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>

namespace loom::eval {
namespace fs = std::filesystem;

namespace {

struct Series {
  std::string key;
  std::vector<double> values;   // per sorted file; NaN where missing or not finite
  std::vector<double> errors;   // 0 where missing
  bool has_errors = false;
};

std::vector<double> x_values(const std::vector<ResultFile>& files, PlotAxis axis) {
  std::vector<double> x;
  for (const ResultFile& file : files) {
    if (axis == PlotAxis::step) {
      if (file.step < 0)
        throw std::runtime_error(file.file.string() + ": model.step is unknown, so it cannot be placed on a step "
                                 "axis; plot over nights with --x date");
      x.push_back(static_cast<double>(file.step));
    } else {
      if (file.date.empty())
        throw std::runtime_error(file.file.string() + ": run.date is missing, so it cannot be placed on a date axis");
      try {
        x.push_back(parse_iso8601_seconds(file.date));
      } catch (const std::invalid_argument& error) {
        throw std::runtime_error(file.file.string() + ": run.date: " + error.what());
      }
    }
  }
  return x;
}

// gnuplot single-quoted strings escape a quote by doubling it.
std::string gnuplot_string(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::string number(double value) {
  if (!std::isfinite(value)) return "NaN";
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.10g", value);
  return buffer;
}

void normalise_by_first(Series& series) {
  const auto first = std::find_if(series.values.begin(), series.values.end(),
                                  [](double v) { return std::isfinite(v) && v != 0.0; });
  if (first == series.values.end()) return;
  const double scale = std::abs(*first);
  for (double& v : series.values) v /= scale;
  for (double& e : series.errors) e /= scale;
}

void run_gnuplot(const fs::path& program, const fs::path& script, const fs::path& log) {
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error(std::string("cannot start gnuplot: fork: ") + std::strerror(errno));
  if (child == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    execl(program.c_str(), program.c_str(), script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  throw std::runtime_error("gnuplot (" + program.string() + ") failed with status " +
                           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) +
                           ": " + text.str());
}

}  // namespace

fs::path find_program(const std::string& program) {
  const auto runnable = [](const fs::path& path) { return ::access(path.c_str(), X_OK) == 0 && !fs::is_directory(path); };
  if (program.find('/') != std::string::npos) return runnable(program) ? fs::path(program) : fs::path();
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (runnable(candidate)) return candidate;
  }
  return {};
}

void plot_results(const std::vector<ResultFile>& unsorted, const PlotOptions& options) {
  if (unsorted.empty()) throw std::runtime_error("--plot: no result files");
  const fs::path gnuplot = find_program(options.gnuplot);
  if (gnuplot.empty())
    throw std::runtime_error("--plot needs gnuplot, and '" + options.gnuplot +
                             "' was not found on PATH (Debian: apt-get install gnuplot-nox)");

  const std::vector<double> unsorted_x = x_values(unsorted, options.x);
  std::vector<std::size_t> order(unsorted.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return unsorted_x[a] < unsorted_x[b]; });

  std::set<std::string> keys;
  for (const ResultFile& file : unsorted)
    for (const auto& entry : file.metrics)
      if (metric_selected(entry.first, options.metrics)) keys.insert(entry.first);
  std::vector<Series> series;
  std::vector<std::string> without_values;
  for (const std::string& key : keys) {
    Series s{key, {}, {}, false};
    for (std::size_t index : order) {
      const auto found = unsorted[index].metrics.find(key);
      const bool finite = found != unsorted[index].metrics.end() && std::isfinite(found->second.value);
      s.values.push_back(finite ? found->second.value : std::nan(""));
      const bool has_error = finite && found->second.standard_error.has_value();
      s.errors.push_back(has_error ? *found->second.standard_error : 0.0);
      s.has_errors = s.has_errors || has_error;
    }
    if (std::none_of(s.values.begin(), s.values.end(), [](double v) { return std::isfinite(v); }))
      without_values.push_back(key);
    else
      series.push_back(std::move(s));
  }
  if (series.empty()) throw std::runtime_error("--plot: no selected metric has a finite value in any file");
  const bool shared_panel = static_cast<int>(series.size()) > options.max_panels;
  if (shared_panel)
    for (Series& s : series) normalise_by_first(s);

  if (options.output.has_parent_path()) fs::create_directories(options.output.parent_path());
  std::string pattern = (fs::temp_directory_path() / "loom-plot-XXXXXX").string();
  const char* made = mkdtemp(pattern.data());
  if (!made) throw std::runtime_error(std::string("--plot: cannot create a temporary directory: ") + std::strerror(errno));
  const fs::path dir(made);
  const fs::path data = dir / "data.txt", script = dir / "plot.gp";
  {
    std::ofstream out(data);
    for (std::size_t i = 0; i < series.size(); ++i) {
      out << (i ? "\n\n" : "") << "# " << series[i].key << "\n";
      for (std::size_t j = 0; j < order.size(); ++j)
        out << number(unsorted_x[order[j]]) << ' ' << number(series[i].values[j]) << ' '
            << number(series[i].errors[j]) << '\n';
    }
  }
  const int panels = shared_panel ? 1 : static_cast<int>(series.size());
  const int columns = panels == 1 ? 1 : 2;
  const int rows = (panels + columns - 1) / columns;
  const int width = shared_panel ? 960 : 640 * columns;  // the shared panel's legend takes width
  const int height = 420 * rows;
  std::string title = options.x == PlotAxis::step ? "loom-eval results over steps" : "loom-eval results over nights";
  if (!without_values.empty()) {
    title += " (no finite values:";
    for (const std::string& key : without_values) title += " " + key;
    title += ")";
  }
  std::ofstream gp(script);
  gp << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
     << "  set terminal pngcairo noenhanced size " << width << "," << height << " font ',9'\n"
     << "} else {\n  set terminal png noenhanced size " << width << "," << height << "\n}\n"
     << "set output " << gnuplot_string(fs::absolute(options.output).string()) << "\n"
     << "set datafile missing 'NaN'\nset grid\nset key bottom right\n"
     << "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n";
  if (options.x == PlotAxis::date)
    gp << "set xdata time\nset timefmt '%s'\nset format x '%Y-%m-%d %H:%M'\nset xtics rotate by -30\nset xlabel 'run.date (UTC)'\n";
  else
    gp << "set xlabel 'model.step'\n";
  gp << "set multiplot layout " << rows << "," << columns << " title " << gnuplot_string(title) << "\n";
  // A panel of its own is titled with the metric, so its line needs no legend entry.
  const auto plot_clause = [&](std::size_t i) {
    const std::string style = series[i].has_errors ? "using 1:2:3 with yerrorlines" : "using 1:2 with linespoints";
    return gnuplot_string(data.string()) + " index " + std::to_string(i) + " " + style + " pt 7 ps 0.7" +
           (shared_panel ? " title " + gnuplot_string(series[i].key) : std::string(" notitle"));
  };
  if (shared_panel) {
    gp << "set ylabel 'value / first finite value'\nset key outside right top\nplot ";
    for (std::size_t i = 0; i < series.size(); ++i) gp << (i ? ", \\\n     " : "") << plot_clause(i);
    gp << "\n";
  } else {
    for (std::size_t i = 0; i < series.size(); ++i)
      gp << "set title " << gnuplot_string(series[i].key) << "\nplot " << plot_clause(i) << "\n";
  }
  gp << "unset multiplot\nset output\n";
  gp.close();

  try {
    run_gnuplot(gnuplot, script, dir / "gnuplot.log");
  } catch (const std::runtime_error& error) {
    throw std::runtime_error(std::string(error.what()) + " (script and data kept in " + dir.string() + ")");
  }
  if (!fs::exists(options.output) || fs::file_size(options.output) == 0)
    throw std::runtime_error("--plot: gnuplot wrote no image to " + options.output.string() + " (script kept in " +
                             dir.string() + ")");
  fs::remove_all(dir);
}

}  // namespace loom::eval
