#include "io/h5/h5_check.h"

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
    return " (the file looks truncated or is not HDF5: was it copied completely? rebuild it with loom-prep --force)";
  }
  if (messages.find("checksum") != std::string::npos) {
    return " (stored data failed its checksum: the file is corrupted; rebuild it with loom-prep --force)";
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
  std::string text = context + ": HDF5 call " + call + " failed at " + source_file + ":" +
                     std::to_string(source_line);
  if (!joined.empty()) text += ": " + joined;
  text += hint_for(joined);
  throw std::runtime_error(text);
}

std::recursive_mutex& global_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

}  // namespace loom::io::h5
