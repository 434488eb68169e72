#include "io/weights/weights.h"

#include <hdf5.h>

#include <stdexcept>
#include <vector>

namespace loom::io {
namespace {

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
  throw std::runtime_error(file.string() + ": " + what);
}

// Closes an HDF5 handle on scope exit.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0) close(id);
  }
};

std::vector<hsize_t> dims_of(const Tensor& t) {
  std::vector<hsize_t> dims;
  for (auto d : t.shape()) dims.push_back(static_cast<hsize_t>(d));
  if (dims.empty()) dims.push_back(1);
  return dims;
}

void write_string_attribute(hid_t object, const char* name, const std::string& value,
                            const std::filesystem::path& file) {
  Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, value.size() + 1);
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle attr{H5Acreate2(object, name, type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (attr.id < 0 || H5Awrite(attr.id, type.id, value.c_str()) < 0) fail(file, std::string("cannot write attribute ") + name);
}

std::string read_string_attribute(hid_t object, const char* name, const std::filesystem::path& file) {
  if (H5Aexists(object, name) <= 0) fail(file, std::string("missing attribute ") + name + " (not a loom weights file?)");
  Handle attr{H5Aopen(object, name, H5P_DEFAULT), H5Aclose};
  Handle type{H5Aget_type(attr.id), H5Tclose};
  std::string value(H5Tget_size(type.id), '\0');
  Handle memtype{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(memtype.id, value.size());
  if (H5Aread(attr.id, memtype.id, value.data()) < 0) fail(file, std::string("cannot read attribute ") + name);
  value.resize(value.find('\0') == std::string::npos ? value.size() : value.find('\0'));
  return value;
}

}  // namespace

void save_weights(const std::filesystem::path& file, std::span<const NamedTensor> tensors,
                  const nlohmann::json& metadata) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  const std::filesystem::path tmp = file.string() + ".tmp";
  {
    Handle f{H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
    if (f.id < 0) fail(tmp, "cannot create HDF5 file (directory writable? disk full?)");
    write_string_attribute(f.id, "metadata", metadata.dump(), tmp);
    write_string_attribute(f.id, "format", "loom-weights", tmp);
    Handle vspace{H5Screate(H5S_SCALAR), H5Sclose};
    Handle vattr{H5Acreate2(f.id, "format_version", H5T_NATIVE_INT, vspace.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
    H5Awrite(vattr.id, H5T_NATIVE_INT, &kWeightsFormatVersion);
    for (const NamedTensor& t : tensors) {
      if (t.tensor.dtype() != DType::F32 || t.tensor.device() != Device::CPU) {
        fail(tmp, "tensor " + t.name + " must be f32 on the CPU, is " + t.tensor.describe());
      }
      const auto dims = dims_of(t.tensor);
      Handle space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
      Handle set{H5Dcreate2(f.id, t.name.c_str(), H5T_IEEE_F32LE, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                 H5Dclose};
      if (set.id < 0 || H5Dwrite(set.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.tensor.raw()) < 0) {
        fail(tmp, "cannot write dataset " + t.name);
      }
    }
    if (H5Fflush(f.id, H5F_SCOPE_GLOBAL) < 0) fail(tmp, "flush failed");
  }
  std::filesystem::rename(tmp, file);
}

nlohmann::json read_weights_metadata(const std::filesystem::path& file) {
  if (!std::filesystem::exists(file)) fail(file, "no such weights file");
  Handle f{H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (f.id < 0) fail(file, "not a readable HDF5 file");
  const std::string text = read_string_attribute(f.id, "metadata", file);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(file, std::string("metadata attribute is not JSON: ") + e.what());
  }
}

void load_weights(const std::filesystem::path& file, std::span<NamedTensor> into) {
  if (!std::filesystem::exists(file)) fail(file, "no such weights file");
  Handle f{H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (f.id < 0) fail(file, "not a readable HDF5 file");
  for (NamedTensor& t : into) {
    if (H5Lexists(f.id, t.name.c_str(), H5P_DEFAULT) <= 0) fail(file, "has no tensor " + t.name);
    Handle set{H5Dopen2(f.id, t.name.c_str(), H5P_DEFAULT), H5Dclose};
    Handle space{H5Dget_space(set.id), H5Sclose};
    const int rank = H5Sget_simple_extent_ndims(space.id);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
    if (dims != dims_of(t.tensor)) {
      Shape found(dims.begin(), dims.end());
      fail(file, "tensor " + t.name + " has shape " + shape_string(found) + ", the model expects " +
                     shape_string(t.tensor.shape()));
    }
    if (H5Dread(set.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.tensor.raw()) < 0) {
      fail(file, "cannot read tensor " + t.name);
    }
  }
}

}  // namespace loom::io
