#include "io/config/value.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <sstream>

namespace loom::config {
namespace {

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

[[noreturn]] void fail(const Setting& setting, std::string_view text) {
  throw ValueError("expects " + expected_form(setting) + ", got \"" + std::string(text) + "\"");
}

std::int64_t parse_int_text(const Setting& setting, std::string_view raw) {
  std::string_view text = trim(raw);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || end != text.data() + text.size()) fail(setting, raw);
  if (ec == std::errc::result_out_of_range)
    throw ValueError("expects " + expected_form(setting) + ", got \"" + std::string(raw) +
                     "\" which is out of the 64-bit range");
  if (ec != std::errc()) fail(setting, raw);
  return value;
}

double parse_float_text(const Setting& setting, std::string_view raw) {
  std::string_view text = trim(raw);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      !std::isfinite(value))
    fail(setting, raw);
  return value;
}

bool parse_bool_text(const Setting& setting, std::string_view raw) {
  const std::string text = lower(trim(raw));
  if (text == "true" || text == "yes" || text == "on" || text == "1") return true;
  if (text == "false" || text == "no" || text == "off" || text == "0") return false;
  fail(setting, raw);
}

template <typename T>
bool outside(const Bounds& bounds, T value) {
  return (bounds.min && static_cast<double>(value) < *bounds.min) ||
         (bounds.max && static_cast<double>(value) > *bounds.max);
}

std::string format_double(double value) {
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::general);
  std::string text(buffer, end);
  // "3" would read back as an int in YAML and look like one in --help; keep it a float.
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

Value parse_value(const Setting& setting, std::string_view text) {
  Value value;
  switch (setting.type) {
    case Type::Int:
      value = parse_int_text(setting, text);
      break;
    case Type::Float:
      value = parse_float_text(setting, text);
      break;
    case Type::Bool:
      value = parse_bool_text(setting, text);
      break;
    case Type::String:
      value = std::string(text);
      break;
    case Type::Path:
      if (trim(text).empty()) throw ValueError("expects a path, got an empty value");
      value = std::string(text);
      break;
    case Type::Enum: {
      const std::string choice(trim(text));
      if (std::find(setting.choices.begin(), setting.choices.end(), choice) ==
          setting.choices.end()) {
        for (const std::string& known : setting.choices)
          if (lower(known) == lower(choice) || edit_distance(known, choice) <= 1)
            throw ValueError("expects " + expected_form(setting) + ", got \"" + std::string(text) +
                             "\" (did you mean \"" + known + "\"?)");
        fail(setting, text);
      }
      value = choice;
      break;
    }
    case Type::IntList:
    case Type::StringList: {
      std::string_view body = trim(text);
      if (body.size() >= 2 && body.front() == '[' && body.back() == ']')
        body = trim(body.substr(1, body.size() - 2));
      std::vector<std::string> items;
      while (!body.empty()) {
        const std::size_t comma = body.find(',');
        items.emplace_back(trim(body.substr(0, comma)));
        if (comma == std::string_view::npos) break;
        body.remove_prefix(comma + 1);
        if (trim(body).empty()) items.emplace_back();  // "1,2," has an empty last item
      }
      if (setting.type == Type::StringList) {
        for (const std::string& item : items)
          if (item.empty()) throw ValueError("expects " + expected_form(setting) + ", got an empty item in \"" + std::string(text) + "\"");
        return Value(std::move(items));
      }
      return parse_int_list(setting, items);
    }
  }
  check_bounds(setting, value);
  return value;
}

Value parse_int_list(const Setting& setting, const std::vector<std::string>& items) {
  std::vector<std::int64_t> values;
  for (const std::string& item : items) {
    std::string_view text = trim(item);
    if (!text.empty() && text.front() == '+') text.remove_prefix(1);
    std::int64_t element = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), element);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size())
      throw ValueError("expects " + expected_form(setting) + ", got element \"" + item + "\"");
    values.push_back(element);
  }
  Value value = std::move(values);
  check_bounds(setting, value);
  return value;
}

void check_bounds(const Setting& setting, const Value& value) {
  const Bounds& bounds = setting.bounds;
  if (!bounds.min && !bounds.max) return;
  const std::string range = format_bounds(bounds);
  if (const auto* i = std::get_if<std::int64_t>(&value); i && outside(bounds, *i))
    throw ValueError("must satisfy " + range + ", got " + std::to_string(*i));
  if (const auto* f = std::get_if<double>(&value); f && outside(bounds, *f))
    throw ValueError("must satisfy " + range + ", got " + format_double(*f));
  if (const auto* list = std::get_if<std::vector<std::int64_t>>(&value))
    for (std::int64_t element : *list)
      if (outside(bounds, element))
        throw ValueError("elements must satisfy " + range + ", got " + std::to_string(element));
}

std::string format_value(const Value& value) {
  struct Visitor {
    std::string operator()(std::int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return format_double(v); }
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(const std::string& v) const { return v; }
    std::string operator()(const std::vector<std::int64_t>& v) const {
      std::string out = "[";
      for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
      return out + "]";
    }
    std::string operator()(const std::vector<std::string>& v) const {
      std::string out = "[";
      for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
      return out + "]";
    }
  };
  return std::visit(Visitor{}, value);
}

std::string expected_form(const Setting& setting) {
  switch (setting.type) {
    case Type::Int: return "an int";
    case Type::Float: return "a float";
    case Type::Bool: return "a bool (true/false)";
    case Type::String: return "a string";
    case Type::Path: return "a path";
    case Type::IntList: return "a list of ints (1,2,3 or [1, 2, 3])";
    case Type::StringList: return "a list of strings (a,b or [a, b])";
    case Type::Enum: {
      std::string out = "one of {";
      for (std::size_t i = 0; i < setting.choices.size(); ++i)
        out += (i ? ", " : "") + setting.choices[i];
      return out + "}";
    }
  }
  return "a value";
}

std::string format_bounds(const Bounds& bounds) {
  const auto number = [](double v) {
    std::ostringstream out;
    out << v;
    return out.str();
  };
  if (bounds.min && bounds.max) return number(*bounds.min) + " <= x <= " + number(*bounds.max);
  if (bounds.min) return "x >= " + number(*bounds.min);
  if (bounds.max) return "x <= " + number(*bounds.max);
  return "";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

}  // namespace loom::config
