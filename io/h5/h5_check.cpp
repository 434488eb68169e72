#include "io/h5/h5_check.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace loom::io::h5 {

namespace {

herr_t collect_message(unsigned /*depth*/, const H5E_error2_t* error, void* data) {
  auto* messages = static_cast<std::vector<std::string>*>(data);
  if (error->desc != nullptr && error->desc[0] != '\0') messages->emplace_back(error->desc);
  return 0;
}

// Short hints for the failures people actually hit.
std::string hint_for(const std::string& messages) {
  if (messages.find("truncated") != std::string::npos || messages.find("signature") != std::string::npos) {
    return " (the file looks truncated or is not HDF5: was it copied or written completely?)";
  }
  if (messages.find("checksum") != std::string::npos) {
    return " (stored data failed its checksum: the file is corrupted)";
  }
  if (messages.find("unable to open file") != std::string::npos ||
      messages.find("No such file") != std::string::npos) {
    return " (does the file exist and is it readable?)";
  }
  return "";
}

}  // namespace

void silence_automatic_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

void throw_error(const char* call, const std::string& context, const char* source_file, int source_line) {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_message, &messages);
  H5Eclear2(H5E_DEFAULT);
  std::string joined;
  for (const auto& message : messages) {
    if (!joined.empty()) joined += "; ";
    joined += message;
  }
  // Some HDF5 messages carry a newline (a ctime() date): one error, one line.
  for (char& c : joined) {
    if (c == '\n') c = ' ';
  }
  std::string text = context + ": HDF5 call " + call + " failed at " + source_file + ":" +
                     std::to_string(source_line);
  if (!joined.empty()) text += ": " + joined;
  text += hint_for(joined);
  throw std::runtime_error(text);
}

// Variable-length strings: loom writes none, but reads them in files made by other tools.
static H5Handle variable_string_type(const std::string& ctx) {
  H5Handle type(H5_CHECK(H5Tcopy(H5T_C_S1), ctx), H5Tclose);
  H5_CHECK(H5Tset_size(type, H5T_VARIABLE), ctx);
  H5_CHECK(H5Tset_cset(type, H5T_CSET_UTF8), ctx);
  return type;
}

// Fixed-length strings live in the attribute message itself, which the 1.8+ format
// checksums; variable-length strings would live in the unchecksummed global heap.
void write_string_attribute(hid_t object, const char* name, const std::string& value, const std::string& ctx) {
  H5Handle type(H5_CHECK(H5Tcopy(H5T_C_S1), ctx), H5Tclose);
  H5_CHECK(H5Tset_size(type, std::max<std::size_t>(value.size(), 1)), ctx);
  H5_CHECK(H5Tset_strpad(type, H5T_STR_NULLPAD), ctx);
  H5_CHECK(H5Tset_cset(type, H5T_CSET_UTF8), ctx);
  H5Handle space(H5_CHECK(H5Screate(H5S_SCALAR), ctx), H5Sclose);
  H5Handle attribute(H5_CHECK(H5Acreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT), ctx), H5Aclose);
  std::string padded = value;
  padded.resize(std::max<std::size_t>(value.size(), 1), '\0');
  H5_CHECK(H5Awrite(attribute, type, padded.data()), ctx);
}

H5Handle open_attribute(hid_t object, const char* name, const std::string& ctx) {
  if (H5_CHECK(H5Aexists(object, name), ctx) <= 0) {
    throw std::runtime_error(ctx + ": missing attribute \"" + name + "\"");
  }
  return H5Handle(H5_CHECK(H5Aopen(object, name, H5P_DEFAULT), ctx), H5Aclose);
}

std::string read_string_attribute(hid_t object, const char* name, const std::string& ctx) {
  H5Handle attribute = open_attribute(object, name, ctx);
  H5Handle stored(H5_CHECK(H5Aget_type(attribute), ctx), H5Tclose);
  if (H5Tget_class(stored) != H5T_STRING) throw std::runtime_error(ctx + ": attribute \"" + name + "\" must be a string");
  if (H5_CHECK(H5Tis_variable_str(stored), ctx) > 0) {
    H5Handle type = variable_string_type(ctx);
    char* text = nullptr;
    H5_CHECK(H5Aread(attribute, type, &text), ctx);
    std::string value = text != nullptr ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(stored), '\0');
  H5_CHECK(H5Aread(attribute, stored, value.data()), ctx);
  value.resize(std::min(value.find('\0'), value.size()));
  return value;
}

void write_int_attribute(hid_t object, const char* name, std::int64_t value, const std::string& ctx) {
  H5Handle space(H5_CHECK(H5Screate(H5S_SCALAR), ctx), H5Sclose);
  H5Handle attribute(H5_CHECK(H5Acreate2(object, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), ctx), H5Aclose);
  H5_CHECK(H5Awrite(attribute, H5T_NATIVE_INT64, &value), ctx);
}

std::int64_t read_int_attribute(hid_t object, const char* name, const std::string& ctx) {
  H5Handle attribute = open_attribute(object, name, ctx);
  std::int64_t value = 0;
  H5_CHECK(H5Aread(attribute, H5T_NATIVE_INT64, &value), ctx);
  return value;
}

std::recursive_mutex& global_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

}  // namespace loom::io::h5
