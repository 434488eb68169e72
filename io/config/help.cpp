#include "io/config/help.h"

#include <algorithm>
#include <sstream>

#include "io/config/value.h"

#ifndef LOOM_VERSION
#define LOOM_VERSION "unknown"
#endif

namespace loom::config {
namespace {

constexpr std::size_t kWidth = 100;

// Greedy word wrap; every line after the first is indented by `indent` spaces.
std::string wrap(std::string_view text, std::size_t first_column, std::size_t indent) {
  std::istringstream words{std::string(text)};
  std::string out, word;
  std::size_t column = first_column;
  bool line_start = true;
  while (words >> word) {
    if (!line_start && column + 1 + word.size() > kWidth) {
      out += '\n';
      out.append(indent, ' ');
      column = indent;
      line_start = true;
    }
    if (!line_start) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    line_start = false;
  }
  return out;
}

std::string type_text(const Setting& setting) {
  return setting.type == Type::Enum ? "enum" : type_name(setting.type);
}

// The doc plus what the type column cannot show: enum choices and bounds.
std::string full_doc(const Setting& setting) {
  std::string doc = setting.doc;
  if (setting.type == Type::Enum) {
    doc += " (one of:";
    for (std::size_t i = 0; i < setting.choices.size(); ++i)
      doc += (i ? ", " : " ") + setting.choices[i];
    doc += ")";
  }
  if (const std::string range = format_bounds(setting.bounds); !range.empty())
    doc += " [" + range + "]";
  return doc;
}

std::string pad(std::string text, std::size_t width) {
  if (text.size() < width) text += std::string(width - text.size(), ' ');
  return text;
}

std::string escape_cell(std::string text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

}  // namespace

std::string loom_version() { return LOOM_VERSION; }

std::string default_text(const Setting& setting) {
  if (setting.presence == Presence::Required) return "required";
  if (!setting.default_value) return "(unset)";
  const std::string text = format_value(*setting.default_value);
  return text.empty() ? "\"\"" : text;
}

std::string help_text(const Schema& schema, const ProgramInfo& info) {
  std::string out = info.name + " " + (info.version.empty() ? loom_version() : info.version);
  if (!info.summary.empty()) out += " — " + info.summary;
  out += "\n\nUsage: " + info.name;
  if (info.max_positionals > 0) out += " " + info.positional_name;
  out += " [--config FILE.yaml] [key=value ...]\n";
  if (!info.examples.empty()) {
    out += "\nExamples:\n";
    for (const std::string& example : info.examples) out += "  " + example + "\n";
  }
  out +=
      "\nOptions:\n"
      "  --config FILE     read settings from a YAML file (repeatable; later files win)\n"
      "  --print-config    print the resolved settings and where each came from, then exit\n"
      "  --help-markdown   print the settings as a Markdown reference, then exit\n"
      "  --version         print the version and exit\n"
      "  -h, --help        print this help and exit\n\n";
  out += wrap(
      "Settings: key=value arguments override the config file, which overrides the defaults. "
      "Nested YAML maps are dotted keys (train: {lr: 3e-4} is train.lr=3e-4). Relative paths "
      "are relative to the current directory.",
      0, 0);
  out += "\n";

  std::size_t key_width = 0, type_width = 0, default_width = 0;
  for (const Setting& setting : schema.settings()) {
    key_width = std::max(key_width, setting.key.size());
    type_width = std::max(type_width, type_text(setting).size());
    default_width = std::max(default_width, std::min<std::size_t>(default_text(setting).size(), 16));
  }
  const std::size_t doc_column = 2 + key_width + 2 + type_width + 2 + default_width + 2;
  for (const std::string& group : schema.groups()) {
    out += "\n" + (group.empty() ? std::string("(top level)") : group);
    if (const std::string doc = schema.group_doc(group); !doc.empty()) out += " — " + doc;
    out += "\n";
    for (const Setting& setting : schema.settings()) {
      if (setting.group() != group) continue;
      std::string line = "  " + pad(setting.key, key_width) + "  " +
                         pad(type_text(setting), type_width) + "  ";
      const std::string def = default_text(setting);
      if (def.size() > default_width) {  // a long default gets its own line
        out += line + def + "\n";
        line = std::string(doc_column, ' ');
      } else {
        line += pad(def, default_width) + "  ";
      }
      if (doc_column > kWidth / 2) {  // too little room beside: doc goes underneath
        out += line + "\n      " + wrap(full_doc(setting), 6, 6) + "\n";
      } else {
        out += line + wrap(full_doc(setting), doc_column, doc_column) + "\n";
      }
    }
  }
  return out;
}

std::string schema_markdown(const Schema& schema, std::string_view title) {
  std::string out = "# " + std::string(title) + "\n\n";
  out +=
      "Generated from the settings declared in the code (`--help-markdown`); do not edit by "
      "hand. Settings are given in a YAML file (`--config FILE.yaml`; nested maps are dotted "
      "keys) and as `key=value` arguments, which win over the file, which wins over the "
      "defaults. Relative paths are relative to the current directory.\n";
  for (const std::string& group : schema.groups()) {
    out += group.empty() ? std::string("\n## Top level") : "\n## `" + group + '`';
    if (const std::string doc = schema.group_doc(group); !doc.empty()) out += " — " + doc;
    out += "\n\n| setting | type | default | meaning |\n|---|---|---|---|\n";
    for (const Setting& setting : schema.settings()) {
      if (setting.group() != group) continue;
      const std::string def = default_text(setting);
      const bool literal = setting.presence == Presence::HasDefault && setting.default_value;
      const std::string tick = literal ? "`" : "";
      out += "| `" + setting.key + "` | " + type_text(setting) + " | " + tick +
             escape_cell(def) + tick + " | " + escape_cell(full_doc(setting)) + " |\n";
    }
  }
  return out;
}

}  // namespace loom::config
