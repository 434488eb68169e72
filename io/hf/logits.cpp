#include "io/hf/logits.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "core/backend.h"
#include "core/model/transformer.h"
#include "io/h5/h5_check.h"

namespace loom::io::hf {
namespace {

namespace fs = std::filesystem;
using h5::H5Handle;

void write_dataset(hid_t file, const char* name, const std::vector<hsize_t>& dims, hid_t file_type, hid_t mem_type,
                   const void* data, const std::string& where) {
  H5Handle space(H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), where), H5Sclose);
  H5Handle set(H5_CHECK(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), where),
               H5Dclose);
  H5_CHECK(H5Dwrite(set, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), where);
}

}  // namespace

std::vector<std::int32_t> parse_token_list(const std::string& text) {
  std::vector<std::int32_t> tokens;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::size_t a = start, b = end;
    while (a < b && text[a] == ' ') ++a;
    while (b > a && text[b - 1] == ' ') --b;
    std::int32_t value = 0;
    const auto [ptr, ec] = std::from_chars(text.data() + a, text.data() + b, value);
    if (a == b || ec != std::errc() || ptr != text.data() + b) {
      throw std::invalid_argument("token " + std::to_string(tokens.size() + 1) + " ('" + text.substr(a, b - a) +
                                  "') is not an integer; expected a comma-separated list like 1,2,3");
    }
    tokens.push_back(value);
    start = end + 1;
  }
  return tokens;
}

Tensor compute_logits(const LoomModel& loom_model, std::span<const std::int32_t> tokens) {
  const model::ModelConfig& config = loom_model.config;
  if (tokens.empty()) throw std::invalid_argument("no tokens given");
  if (static_cast<std::int64_t>(tokens.size()) > config.max_seq_len) {
    throw std::invalid_argument(std::to_string(tokens.size()) + " tokens exceed the model's max_seq_len " +
                                std::to_string(config.max_seq_len));
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config.vocab_size) {
      throw std::invalid_argument("token " + std::to_string(i + 1) + " (" + std::to_string(tokens[i]) +
                                  ") is outside the vocabulary [0, " + std::to_string(config.vocab_size) + ")");
    }
  }
  auto backend = make_cpu_backend();
  model::Transformer model(config, model::ShardSpec::whole(config), model::HeadKind::LM, *backend);
  for (const model::ParameterEntry& e : model.params().entries()) {
    const Tensor& source = loom_model.tensor(e.name);
    if (source.shape() != e.shape) {
      throw std::invalid_argument(loom_model.source + ": tensor " + e.name + " is " + shape_string(source.shape()) +
                                  ", the model expects " + shape_string(e.shape));
    }
    Tensor destination = model.params().value(e);
    std::memcpy(destination.raw(), source.raw(), source.nbytes());
  }
  const auto t = static_cast<std::int64_t>(tokens.size());
  Tensor ids = Tensor::empty({1, t}, DType::I32);
  Tensor targets = Tensor::empty({1, t}, DType::I32);
  std::memcpy(ids.raw(), tokens.data(), tokens.size() * sizeof(std::int32_t));
  std::fill_n(targets.data<std::int32_t>(), t, -1);  // no loss wanted, only the logits
  model.forward_lm(ids, targets);
  return model.lm_logits().reshape({t, config.vocab_size}).clone();
}

void write_logits_file(const fs::path& file, const Tensor& logits, std::span<const std::int32_t> tokens,
                       const std::string& source) {
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  const fs::path tmp = file.string() + ".tmp";
  const std::string where = tmp.string();
  h5::silence_automatic_errors();
  {
    H5Handle f(H5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), where), H5Fclose);
    h5::write_string_attribute(f, "format", "loom-logits", where);
    h5::write_string_attribute(f, "source", source, where);
    const std::vector<hsize_t> logit_dims = {static_cast<hsize_t>(logits.dim(0)), static_cast<hsize_t>(logits.dim(1))};
    write_dataset(f, "logits", logit_dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, logits.raw(), where + " dataset logits");
    write_dataset(f, "tokens", {static_cast<hsize_t>(tokens.size())}, H5T_STD_I32LE, H5T_NATIVE_INT32, tokens.data(),
                  where + " dataset tokens");
    H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL), where);
  }
  fs::rename(tmp, file);
}

}  // namespace loom::io::hf
