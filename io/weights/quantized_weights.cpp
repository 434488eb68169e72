#include "io/weights/quantized_weights.h"

#include <stdexcept>

#include "io/h5/h5_check.h"

namespace loom::io {
namespace {

using h5::H5Handle;
namespace fs = std::filesystem;

void write_dataset(hid_t f, const std::string& name, hid_t file_type, hid_t mem_type, std::int64_t rows,
                   std::int64_t cols, const void* data, const std::string& where) {
  const hsize_t dims[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(cols)};
  const std::string what = where + " dataset " + name;
  H5Handle space(H5_CHECK(H5Screate_simple(cols > 0 ? 2 : 1, dims, nullptr), what), H5Sclose);
  H5Handle set(H5_CHECK(H5Dcreate2(f, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), what),
               H5Dclose);
  H5_CHECK(H5Dwrite(set, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), what);
}

std::vector<hsize_t> dataset_dims(hid_t set, const std::string& what) {
  H5Handle space(H5_CHECK(H5Dget_space(set), what), H5Sclose);
  const int n = H5_CHECK(H5Sget_simple_extent_ndims(space), what);
  std::vector<hsize_t> dims(static_cast<std::size_t>(n));
  H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr), what);
  return dims;
}

template <typename T>
std::vector<T> read_dataset(hid_t f, const std::string& name, hid_t mem_type, std::int64_t rows, std::int64_t cols,
                            const std::string& where) {
  const std::string what = where + " dataset " + name;
  if (H5Lexists(f, name.c_str(), H5P_DEFAULT) <= 0) throw std::runtime_error(where + ": missing dataset " + name);
  H5Handle set(H5_CHECK(H5Dopen2(f, name.c_str(), H5P_DEFAULT), what), H5Dclose);
  hsize_t count = 1;
  for (hsize_t d : dataset_dims(set, what)) count *= d;
  if (static_cast<std::int64_t>(count) != rows * cols) {
    throw std::runtime_error(what + ": holds " + std::to_string(count) + " elements, expected [" + std::to_string(rows) +
                             ", " + std::to_string(cols) + "]");
  }
  std::vector<T> out(static_cast<std::size_t>(count));
  H5_CHECK(H5Dread(set, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), what);
  return out;
}

std::int64_t read_attr(hid_t f, const std::string& name, const char* attr, const std::string& where) {
  H5Handle set(H5_CHECK(H5Dopen2(f, name.c_str(), H5P_DEFAULT), where + " dataset " + name), H5Dclose);
  return h5::read_int_attribute(set, attr, where + " dataset " + name);
}

}  // namespace

std::vector<std::uint8_t> pack_mask(const std::uint8_t* keep, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row_bytes = (cols + 7) / 8;
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(rows * row_bytes), 0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      if (keep[r * cols + c] != 0) packed[static_cast<std::size_t>(r * row_bytes + c / 8)] |= std::uint8_t(1u << (c % 8));
  return packed;
}

std::vector<std::uint8_t> unpack_mask(const std::vector<std::uint8_t>& packed, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row_bytes = (cols + 7) / 8;
  if (static_cast<std::int64_t>(packed.size()) != rows * row_bytes) {
    throw std::invalid_argument("unpack_mask: " + std::to_string(packed.size()) + " bytes for a [" +
                                std::to_string(rows) + ", " + std::to_string(cols) + "] mask");
  }
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      keep[static_cast<std::size_t>(r * cols + c)] = (packed[static_cast<std::size_t>(r * row_bytes + c / 8)] >> (c % 8)) & 1;
  return keep;
}

void save_quantized_model(const fs::path& file, const QuantizedModel& model) {
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  const fs::path tmp = file.string() + ".tmp";
  const std::string where = tmp.string();
  h5::silence_automatic_errors();
  {
    H5Handle f(H5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), where), H5Fclose);
    h5::write_string_attribute(f, "format", "loom-quantized", where);
    h5::write_int_attribute(f, "format_version", kQuantizedFormatVersion, where);
    h5::write_string_attribute(f, "metadata", model.metadata.dump(), where);
    for (const NamedTensor& t : model.dense) {
      const Tensor& x = t.tensor;
      const std::int64_t rows = x.ndim() >= 1 ? x.dim(0) : 1, cols = x.ndim() >= 2 ? x.numel() / rows : 0;
      write_dataset(f, t.name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rows, cols, x.raw(), where);
    }
    for (const CompressedLinear& l : model.linears) {
      const std::string base = l.prefix + ".weight";
      if (l.quantized) {
        const quant::QuantizedMatrix& q = *l.quantized;
        write_dataset(f, base + ".codes", H5T_STD_U8LE, H5T_NATIVE_UINT8, q.rows, q.row_bytes(), q.codes.data(), where);
        write_dataset(f, base + ".scales", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, q.rows, q.groups(), q.scales.data(), where);
        write_dataset(f, base + ".zeros", H5T_STD_U8LE, H5T_NATIVE_UINT8, q.rows, q.groups(), q.zeros.data(), where);
        H5Handle set(H5_CHECK(H5Dopen2(f, (base + ".codes").c_str(), H5P_DEFAULT), where), H5Dclose);
        h5::write_int_attribute(set, "bits", q.scheme.bits, where);
        h5::write_int_attribute(set, "group_size", q.scheme.group_size, where);
        h5::write_int_attribute(set, "symmetric", q.scheme.symmetric ? 1 : 0, where);
        h5::write_int_attribute(set, "cols", q.cols, where);
      }
      if (!l.mask.empty()) {
        write_dataset(f, base + ".mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, l.rows, (l.cols + 7) / 8, l.mask.data(), where);
      }
    }
    H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL), where);
  }
  fs::rename(tmp, file);
}

bool is_quantized_model_file(const fs::path& file) {
  if (!fs::is_regular_file(file)) return false;
  h5::silence_automatic_errors();
  if (H5Fis_hdf5(file.c_str()) <= 0) return false;
  H5Handle f(H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), file.string()), H5Fclose);
  if (H5Aexists(f, "format") <= 0) return false;
  return h5::read_string_attribute(f, "format", file.string()) == "loom-quantized";
}

QuantizedModel load_quantized_model(const fs::path& file) {
  const std::string where = file.string();
  if (!is_quantized_model_file(file)) throw std::runtime_error(where + ": not a loom-quantized model file");
  H5Handle f(H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), where), H5Fclose);
  const std::int64_t version = h5::read_int_attribute(f, "format_version", where);
  if (version != kQuantizedFormatVersion) {
    throw std::runtime_error(where + ": format_version " + std::to_string(version) + ", this loom reads " +
                             std::to_string(kQuantizedFormatVersion));
  }
  QuantizedModel model;
  model.metadata = nlohmann::json::parse(h5::read_string_attribute(f, "metadata", where));
  // Every dataset name, sorted into dense tensors and compressed linears.
  std::vector<std::string> names;
  H5Literate(
      f, H5_INDEX_NAME, H5_ITER_INC, nullptr,
      [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->push_back(name);
        return 0;
      },
      &names);
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  std::vector<std::string> prefixes;
  for (const std::string& name : names) {
    if (ends_with(name, ".weight.codes") || ends_with(name, ".weight.mask")) {
      const std::string prefix = name.substr(0, name.rfind(".weight."));
      if (prefixes.empty() || prefixes.back() != prefix) prefixes.push_back(prefix);
      continue;
    }
    if (ends_with(name, ".weight.scales") || ends_with(name, ".weight.zeros")) continue;
    const std::string what = where + " dataset " + name;
    H5Handle set(H5_CHECK(H5Dopen2(f, name.c_str(), H5P_DEFAULT), what), H5Dclose);
    Shape shape;
    for (hsize_t d : dataset_dims(set, what)) shape.push_back(static_cast<std::int64_t>(d));
    NamedTensor t{name, Tensor::empty(shape)};
    H5_CHECK(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.tensor.raw()), what);
    model.dense.push_back(std::move(t));
  }
  for (const std::string& prefix : prefixes) {
    CompressedLinear l;
    l.prefix = prefix;
    const std::string codes = prefix + ".weight.codes", mask = prefix + ".weight.mask";
    if (H5Lexists(f, codes.c_str(), H5P_DEFAULT) > 0) {
      quant::Scheme scheme;
      scheme.bits = static_cast<int>(read_attr(f, codes, "bits", where));
      scheme.group_size = read_attr(f, codes, "group_size", where);
      scheme.symmetric = read_attr(f, codes, "symmetric", where) != 0;
      H5Handle set(H5_CHECK(H5Dopen2(f, codes.c_str(), H5P_DEFAULT), where), H5Dclose);
      const std::int64_t rows = static_cast<std::int64_t>(dataset_dims(set, where + " dataset " + codes).at(0));
      const std::int64_t cols = read_attr(f, codes, "cols", where);
      quant::QuantizedMatrix q = quant::QuantizedMatrix::empty(rows, cols, scheme);
      q.codes = read_dataset<std::uint8_t>(f, codes, H5T_NATIVE_UINT8, rows, q.row_bytes(), where);
      q.scales = read_dataset<float>(f, prefix + ".weight.scales", H5T_NATIVE_FLOAT, rows, q.groups(), where);
      q.zeros = read_dataset<std::uint8_t>(f, prefix + ".weight.zeros", H5T_NATIVE_UINT8, rows, q.groups(), where);
      l.rows = rows, l.cols = cols;
      l.quantized = std::move(q);
    } else {
      const NamedTensor* dense = nullptr;
      for (const NamedTensor& t : model.dense)
        if (t.name == prefix + ".weight") dense = &t;
      if (dense == nullptr) throw std::runtime_error(where + ": " + mask + " has no " + prefix + ".weight beside it");
      l.rows = dense->tensor.dim(0), l.cols = dense->tensor.dim(1);
    }
    if (H5Lexists(f, mask.c_str(), H5P_DEFAULT) > 0) {
      l.mask = read_dataset<std::uint8_t>(f, mask, H5T_NATIVE_UINT8, l.rows, (l.cols + 7) / 8, where);
    }
    model.linears.push_back(std::move(l));
  }
  return model;
}

}  // namespace loom::io

namespace loom::io {

LinearSlice linear_slice(const model::ParameterSpec& spec, int tp_rank, int tp_size) {
  if (spec.shape.size() != 2 || spec.global_shape.size() != 2) {
    throw std::invalid_argument("linear_slice: " + spec.name + " is not a matrix");
  }
  const std::int64_t local_rows = spec.shape[0], local_cols = spec.shape[1], global_cols = spec.global_shape[1];
  LinearSlice s;
  s.cols = local_cols;
  for (std::int64_t i = 0; i < local_rows; ++i) {
    const std::int64_t g = model::global_element_index(spec, i * local_cols, tp_rank, tp_size);
    s.rows.push_back(g / global_cols);
    if (i == 0) s.col0 = g % global_cols;
  }
  return s;
}

namespace {

void check_column_slice(const quant::QuantizedMatrix& q, const LinearSlice& s) {
  const std::int64_t g = q.scheme.group_size;
  if ((g > 0 && s.col0 % g != 0) || (q.scheme.bits == 4 && s.col0 % 2 != 0)) {
    throw std::invalid_argument("a tensor-parallel slice starting at column " + std::to_string(s.col0) +
                                " splits a quantization group of " + std::to_string(g) + " columns (" +
                                q.scheme.name() + "): choose a group size dividing the slice width");
  }
}

}  // namespace

quant::QuantizedMatrix slice_quantized(const quant::QuantizedMatrix& global, const LinearSlice& s) {
  check_column_slice(global, s);
  quant::QuantizedMatrix part = quant::QuantizedMatrix::empty(static_cast<std::int64_t>(s.rows.size()), s.cols,
                                                              global.scheme);
  const std::int64_t g0 = global.scheme.group_of(s.col0);
  for (std::size_t i = 0; i < s.rows.size(); ++i) {
    const std::int64_t r = static_cast<std::int64_t>(i), gr = s.rows[i];
    for (std::int64_t c = 0; c < s.cols; ++c) part.set_code(r, c, global.code(gr, s.col0 + c));
    for (std::int64_t g = 0; g < part.groups(); ++g) part.set_params(r, g, global.params(gr, g0 + g));
  }
  return part;
}

void place_quantized(const quant::QuantizedMatrix& part, const LinearSlice& s, quant::QuantizedMatrix& global) {
  check_column_slice(global, s);
  const std::int64_t g0 = global.scheme.group_of(s.col0);
  for (std::size_t i = 0; i < s.rows.size(); ++i) {
    const std::int64_t r = static_cast<std::int64_t>(i), gr = s.rows[i];
    for (std::int64_t c = 0; c < s.cols; ++c) global.set_code(gr, s.col0 + c, part.code(r, c));
    for (std::int64_t g = 0; g < part.groups(); ++g) global.set_params(gr, g0 + g, part.params(r, g));
  }
}

void place_mask(const std::vector<std::uint8_t>& part, const LinearSlice& s, std::int64_t global_cols,
                std::vector<std::uint8_t>& global) {
  for (std::size_t i = 0; i < s.rows.size(); ++i)
    for (std::int64_t c = 0; c < s.cols; ++c)
      global[static_cast<std::size_t>(s.rows[i] * global_cols + s.col0 + c)] =
          part[static_cast<std::size_t>(static_cast<std::int64_t>(i) * s.cols + c)];
}

}  // namespace loom::io
