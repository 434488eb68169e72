#include "io/weights/weights.h"

#include <stdexcept>
#include <vector>

#include "io/h5/h5_check.h"

namespace loom::io {
namespace {

using h5::H5Handle;

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
  throw std::runtime_error(file.string() + ": " + what);
}

std::vector<hsize_t> dims_of(const Tensor& t) {
  std::vector<hsize_t> dims;
  for (auto d : t.shape()) dims.push_back(static_cast<hsize_t>(d));
  if (dims.empty()) dims.push_back(1);
  return dims;
}

H5Handle open_for_reading(const std::filesystem::path& file) {
  if (!std::filesystem::exists(file)) fail(file, "no such weights file");
  h5::silence_automatic_errors();
  return H5Handle(H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), file.string()), H5Fclose);
}

}  // namespace

void save_weights(const std::filesystem::path& file, std::span<const NamedTensor> tensors,
                  const nlohmann::json& metadata) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  const std::filesystem::path tmp = file.string() + ".tmp";
  const std::string where = tmp.string();
  h5::silence_automatic_errors();
  {
    H5Handle f(H5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), where), H5Fclose);
    h5::write_string_attribute(f, "metadata", metadata.dump(), where);
    h5::write_string_attribute(f, "format", "loom-weights", where);
    H5Handle vspace(H5_CHECK(H5Screate(H5S_SCALAR), where), H5Sclose);
    H5Handle vattr(H5_CHECK(H5Acreate2(f, "format_version", H5T_NATIVE_INT, vspace, H5P_DEFAULT, H5P_DEFAULT), where),
                   H5Aclose);
    H5_CHECK(H5Awrite(vattr, H5T_NATIVE_INT, &kWeightsFormatVersion), where);
    for (const NamedTensor& t : tensors) {
      if (t.tensor.dtype() != DType::F32 || t.tensor.device() != Device::CPU) {
        fail(tmp, "tensor " + t.name + " must be f32 on the CPU, is " + t.tensor.describe());
      }
      const auto dims = dims_of(t.tensor);
      const std::string what = where + " tensor " + t.name;
      H5Handle space(H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), what), H5Sclose);
      H5Handle set(H5_CHECK(H5Dcreate2(f, t.name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                            what),
                   H5Dclose);
      H5_CHECK(H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.tensor.raw()), what);
    }
    H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL), where);
  }
  std::filesystem::rename(tmp, file);
}

nlohmann::json read_weights_metadata(const std::filesystem::path& file) {
  H5Handle f = open_for_reading(file);
  const std::string text = h5::read_string_attribute(f, "metadata", file.string());
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(file, std::string("metadata attribute is not JSON: ") + e.what());
  }
}

void load_weights(const std::filesystem::path& file, std::span<NamedTensor> into) {
  H5Handle f = open_for_reading(file);
  const std::string where = file.string();
  for (NamedTensor& t : into) {
    if (H5_CHECK(H5Lexists(f, t.name.c_str(), H5P_DEFAULT), where) == 0) fail(file, "has no tensor " + t.name);
    const std::string what = where + " tensor " + t.name;
    H5Handle set(H5_CHECK(H5Dopen2(f, t.name.c_str(), H5P_DEFAULT), what), H5Dclose);
    H5Handle space(H5_CHECK(H5Dget_space(set), what), H5Sclose);
    const int rank = H5_CHECK(H5Sget_simple_extent_ndims(space), what);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr), what);
    if (dims != dims_of(t.tensor)) {
      Shape found(dims.begin(), dims.end());
      fail(file, "tensor " + t.name + " has shape " + shape_string(found) + ", the model expects " +
                     shape_string(t.tensor.shape()));
    }
    H5_CHECK(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.tensor.raw()), what);
  }
}

}  // namespace loom::io
