// Read-only access to the golden files make_reference.py writes (format_version 1): typed
// datasets and attributes by path, every HDF5 call checked and reported with the file, the
// object path and what was expected. Test-only, header-only; one thread.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace loom::reference {

class ReferenceFile {
 public:
  static constexpr std::int64_t kFormatVersion = 1;

  explicit ReferenceFile(const std::string& path) : path_(path) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors become exceptions below, not stderr dumps
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file_ < 0) {
      throw std::runtime_error(path + ": cannot open as HDF5; generate it with /usr/bin/python3 "
                               "tests/reference/make_reference.py --out <dir> (ctest runs this as the "
                               "reference_data fixture)");
    }
    const std::int64_t version = attr_int("/", "format_version");
    if (version != kFormatVersion) {
      throw std::runtime_error(path + ": format_version " + std::to_string(version) + ", this test reads " +
                               std::to_string(kFormatVersion) + "; regenerate the file");
    }
  }
  ~ReferenceFile() {
    if (file_ >= 0) H5Fclose(file_);
  }
  ReferenceFile(const ReferenceFile&) = delete;
  ReferenceFile& operator=(const ReferenceFile&) = delete;

  const std::string& path() const { return path_; }

  bool exists(const std::string& object) const {
    // H5Lexists on every prefix: a missing intermediate group is "absent", not an error.
    std::size_t pos = 0;
    while ((pos = object.find('/', pos + 1)) != std::string::npos) {
      if (H5Lexists(file_, object.substr(0, pos).c_str(), H5P_DEFAULT) <= 0) return false;
    }
    return H5Lexists(file_, object.c_str(), H5P_DEFAULT) > 0;
  }

  // Names of the members of a group, in HDF5's (alphabetical) order.
  std::vector<std::string> members(const std::string& group) const {
    std::vector<std::string> names;
    H5Literate_by_name(file_, group.c_str(), H5_INDEX_NAME, H5_ITER_INC, nullptr, &collect_name, &names,
                       H5P_DEFAULT);
    return names;
  }

  std::vector<double> doubles(const std::string& dataset, std::vector<std::int64_t>* shape = nullptr) const {
    return read<double>(dataset, H5T_NATIVE_DOUBLE, shape);
  }
  std::vector<float> floats(const std::string& dataset, std::vector<std::int64_t>* shape = nullptr) const {
    return read<float>(dataset, H5T_NATIVE_FLOAT, shape);
  }
  std::vector<std::int32_t> ints(const std::string& dataset, std::vector<std::int64_t>* shape = nullptr) const {
    return read<std::int32_t>(dataset, H5T_NATIVE_INT32, shape);
  }
  double scalar(const std::string& dataset) const {
    const std::vector<double> v = doubles(dataset);
    if (v.size() != 1) fail(dataset, "expected a scalar, found " + std::to_string(v.size()) + " elements");
    return v[0];
  }

  std::int64_t attr_int(const std::string& object, const std::string& name) const {
    std::int64_t value = 0;
    read_attr(object, name, H5T_NATIVE_INT64, &value);
    return value;
  }
  double attr_double(const std::string& object, const std::string& name) const {
    double value = 0;
    read_attr(object, name, H5T_NATIVE_DOUBLE, &value);
    return value;
  }
  std::string attr_string(const std::string& object, const std::string& name) const {
    const hid_t attr = open_attr(object, name);
    const hid_t stored = H5Aget_type(attr);
    std::string out;
    herr_t status = -1;
    if (H5Tis_variable_str(stored) > 0) {
      const hid_t mem = H5Tcopy(H5T_C_S1);
      H5Tset_size(mem, H5T_VARIABLE);
      H5Tset_cset(mem, H5Tget_cset(stored));
      char* text = nullptr;
      status = H5Aread(attr, mem, &text);
      if (status >= 0 && text != nullptr) out = text;
      if (text != nullptr) H5free_memory(text);
      H5Tclose(mem);
    } else if (H5Tget_class(stored) == H5T_STRING) {
      std::vector<char> buffer(H5Tget_size(stored) + 1, '\0');
      status = H5Aread(attr, stored, buffer.data());
      out = buffer.data();
    }
    H5Tclose(stored);
    H5Aclose(attr);
    if (status < 0) fail(object + "@" + name, "expected a string attribute");
    return out;
  }

 private:
  static herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  }

  [[noreturn]] void fail(const std::string& object, const std::string& what) const {
    throw std::runtime_error(path_ + ": " + object + ": " + what);
  }

  template <typename T>
  std::vector<T> read(const std::string& name, hid_t mem_type, std::vector<std::int64_t>* shape) const {
    if (!exists(name)) fail(name, "dataset missing");
    const hid_t dataset = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
    if (dataset < 0) fail(name, "cannot open dataset");
    const hid_t space = H5Dget_space(dataset);
    const int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank > 0 ? rank : 0));
    if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    std::size_t count = 1;
    for (hsize_t d : dims) count *= static_cast<std::size_t>(d);
    if (shape != nullptr) shape->assign(dims.begin(), dims.end());
    std::vector<T> values(count);
    const herr_t status = H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    H5Sclose(space);
    H5Dclose(dataset);
    if (status < 0) fail(name, "cannot read as the requested numeric type");
    return values;
  }

  hid_t open_attr(const std::string& object, const std::string& name) const {
    const hid_t attr = H5Aopen_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) fail(object + "@" + name, "attribute missing");
    return attr;
  }

  void read_attr(const std::string& object, const std::string& name, hid_t mem_type, void* out) const {
    const hid_t attr = open_attr(object, name);
    const herr_t status = H5Aread(attr, mem_type, out);
    H5Aclose(attr);
    if (status < 0) fail(object + "@" + name, "cannot read as a number");
  }

  std::string path_;
  hid_t file_ = -1;
};

}  // namespace loom::reference
