#include "io/record/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

namespace loom::record {
namespace {

std::string printf_string(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

}  // namespace

Progress::Progress(std::int64_t total_steps, std::string label, ProgressOptions options,
                   std::int64_t start_step)
    : total_(total_steps),
      label_(std::move(label)),
      options_(std::move(options)),
      out_(options_.out ? options_.out : &std::cerr),
      tty_(options_.tty.value_or(::isatty(STDERR_FILENO) == 1)),
      start_time_(now()),
      last_step_(start_step),
      last_time_(start_time_),
      last_output_step_(start_step) {}

Progress::~Progress() { finish(); }

double Progress::now() const {
  if (options_.clock) return options_.clock();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Progress::update(std::int64_t step, const std::vector<Field>& fields) {
  const double time = now();
  elapsed_ = time - start_time_;
  if (step > last_step_) {
    const double per_step = (time - last_time_) / static_cast<double>(step - last_step_);
    seconds_per_step_ = seconds_per_step_
                            ? options_.smoothing * per_step +
                                  (1 - options_.smoothing) * *seconds_per_step_
                            : per_step;
    last_step_ = step;
    last_time_ = time;
  }
  const bool last = step >= total_;
  if (tty_) {
    if (!last && last_output_time_ && time - *last_output_time_ < options_.redraw_seconds) return;
    *out_ << '\r' << render(step, fields) << "\x1b[K" << std::flush;
    line_open_ = true;
  } else {
    const bool due_by_steps =
        options_.plain_every_steps > 0 && step - last_output_step_ >= options_.plain_every_steps;
    const bool due_by_time = options_.plain_every_seconds > 0 && last_output_time_ &&
                             time - *last_output_time_ >= options_.plain_every_seconds;
    if (!last && last_output_time_ && !due_by_steps && !due_by_time) return;
    *out_ << render(step, fields) << '\n' << std::flush;
  }
  last_output_time_ = time;
  last_output_step_ = step;
}

void Progress::finish() {
  if (line_open_) *out_ << '\n' << std::flush;
  line_open_ = false;
}

std::optional<double> Progress::eta_seconds() const {
  if (!seconds_per_step_) return std::nullopt;
  return static_cast<double>(std::max<std::int64_t>(total_ - last_step_, 0)) * *seconds_per_step_;
}

std::string Progress::render(std::int64_t step, const std::vector<Field>& fields) const {
  const std::string total = std::to_string(total_);
  std::string count = std::to_string(step);
  if (count.size() < total.size()) count.insert(0, total.size() - count.size(), ' ');
  const double fraction =
      total_ > 0 ? std::clamp(static_cast<double>(step) / static_cast<double>(total_), 0.0, 1.0) : 0;
  std::string line = label_;
  if (tty_) {
    const int filled = static_cast<int>(std::floor(fraction * options_.bar_width));
    line += " [" + std::string(filled, '#') + std::string(options_.bar_width - filled, '-') + "]  " +
            count + "/" + total;
  } else {
    line += " " + options_.unit + " " + count + "/" + total + " (" +
            std::to_string(static_cast<int>(std::floor(fraction * 100))) + "%)";
  }
  for (const Field& field : fields) line += "  " + field.name + " " + format_number(field.value);
  const std::optional<double> eta = eta_seconds();
  line += "  elapsed " + format_duration(elapsed_) + "  eta " + (eta ? format_duration(*eta) : "?");
  return line;
}

std::string Progress::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long long s = std::llround(seconds);
  char text[32];
  if (s < 60) std::snprintf(text, sizeof text, "%llds", s);
  else if (s < 3600) std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
  else if (s < 100 * 3600) std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  else std::snprintf(text, sizeof text, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
  return text;
}

std::string Progress::format_number(double value) {
  if (!std::isfinite(value)) return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  const double magnitude = std::fabs(value);
  if (magnitude >= 1e9) return printf_string("%.1fG", value / 1e9);
  if (magnitude >= 1e6) return printf_string("%.1fM", value / 1e6);
  if (magnitude >= 1e4) return printf_string("%.1fk", value / 1e3);
  if (value == std::floor(value)) return printf_string("%.0f", value);
  return printf_string("%.4g", value);
}

}  // namespace loom::record
