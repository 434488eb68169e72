// Checked calls into the HDF5 C API and an owning handle for hid_t.
//
//   H5Handle file(H5_CHECK(H5Fopen(name, H5F_ACC_RDONLY, H5P_DEFAULT), name), H5Fclose);
//
// A failing call (negative hid_t/herr_t/htri_t) throws std::runtime_error:
//   "data/train.h5: HDF5 call H5Fopen(...) failed at io/data/token_store.cpp:88: truncated
//    file: eof = 2048, sblock->base_addr = 0, stored_eof = 6144 (is the file complete?)"
// naming the data file, the HDF5 call, the source line and HDF5's own innermost error
// messages. HDF5's automatic error printing to stderr is switched off the first time
// this header's functions run, so the exception carries the only report.
//
// Thread safety: HDF5 itself is not thread-safe in Debian's build; callers serialise.
// Uses HDF5 serially (default file access property list); never calls MPI.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

namespace loom::io::h5 {

// Turns off HDF5's automatic error stack printing (once per process).
void silence_automatic_errors();

// Serialises HDF5 calls between threads (the checkpoint saver's thread and the main thread):
// Debian's HDF5 is built without its own thread safety. Recursive, so helpers may nest.
std::recursive_mutex& global_mutex();

[[noreturn]] void throw_error(const char* call, const std::string& context, const char* source_file,
                              int source_line);

template <typename T>
T check(T result, const char* call, const std::string& context, const char* source_file, int source_line) {
  if (result < 0) throw_error(call, context, source_file, source_line);
  return result;
}

// Owns one hid_t and closes it with the matching H5?close function.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  H5Handle(H5Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), closer_(other.closer_) {}
  H5Handle& operator=(H5Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = other.closer_;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  void reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Attributes, the one implementation every loom HDF5 file uses. Strings are written
// fixed-length UTF-8 (they live in the checksummed attribute message) and read either way
// (h5py writes variable-length ones). `context` names the file in errors; a missing or
// mistyped attribute throws std::runtime_error naming it.
H5Handle open_attribute(hid_t object, const char* name, const std::string& context);
void write_string_attribute(hid_t object, const char* name, const std::string& value, const std::string& context);
std::string read_string_attribute(hid_t object, const char* name, const std::string& context);
void write_int_attribute(hid_t object, const char* name, std::int64_t value, const std::string& context);
std::int64_t read_int_attribute(hid_t object, const char* name, const std::string& context);

}  // namespace loom::io::h5

// `context` names what is being read or written (usually the data file's path).
#define H5_CHECK(call, context) ::loom::io::h5::check((call), #call, (context), __FILE__, __LINE__)
