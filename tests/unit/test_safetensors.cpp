// safetensors: a written file reads back bit-exactly with its metadata and 8-byte aligned
// data; F16/BF16 decode to the values their bit patterns define; and every kind of damaged
// file (short, truncated, bad JSON, bad or overlapping offsets, unknown dtype) is refused
// with a message naming the file (and the tensor where one is at fault).
#define BOOST_TEST_MODULE safetensors
#include <boost/test/unit_test.hpp>

#include "tests/unit/error_of.h"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "io/hf/safetensors.h"

namespace fs = std::filesystem;
using namespace loom;
using namespace loom::io::hf;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("loom-test-safetensors-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

std::vector<std::uint8_t> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put_bytes(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A file with the given header text and data bytes, as a foreign writer might produce it.
fs::path handmade(const std::string& name, const std::string& header, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> bytes(8);
  const std::uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  const fs::path path = scratch(name);
  put_bytes(path, bytes);
  return path;
}

std::vector<std::uint8_t> u16_bytes(const std::vector<std::uint16_t>& values) {
  std::vector<std::uint8_t> out(values.size() * 2);
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

Tensor filled(const Shape& shape, float start) {
  Tensor t = Tensor::empty(shape, DType::F32);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + 0.37f * static_cast<float>(i);
  return t;
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

}  // namespace

BOOST_AUTO_TEST_CASE(round_trip_is_bit_exact_with_metadata) {
  Tensor matrix = filled({3, 5}, -1.0f);
  matrix.data<float>()[0] = -0.0f;
  matrix.data<float>()[1] = std::numeric_limits<float>::denorm_min();
  matrix.data<float>()[2] = std::bit_cast<float>(0x7fc12345u);  // a NaN with a payload
  matrix.data<float>()[3] = std::numeric_limits<float>::infinity();
  const Tensor vector = filled({7}, 2.5f);
  const Tensor empty = Tensor::empty({0, 4}, DType::F32);
  const std::vector<SafetensorsTensor> tensors = {{"b.matrix", matrix}, {"a.vector", vector}, {"c.empty", empty}};
  const fs::path path = scratch("round_trip.safetensors");
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "loom \"test\""}});
  BOOST_TEST(!fs::exists(path.string() + ".tmp"));

  const std::vector<std::uint8_t> bytes = file_bytes(path);
  std::uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  BOOST_TEST((8 + header) % 8 == 0u);  // data starts aligned
  BOOST_TEST(bytes.size() == 8 + header + (15 + 7) * 4);

  const SafetensorsFile file(path);
  BOOST_TEST(file.metadata().size() == 2u);
  BOOST_TEST(file.metadata().at("note") == "loom \"test\"");
  BOOST_TEST(file.metadata().at("format") == "pt");
  BOOST_REQUIRE(file.entries().size() == 3u);
  BOOST_TEST(file.entries()[0].name == "b.matrix");  // data order = write order
  BOOST_TEST(file.entries()[1].name == "a.vector");
  for (const auto& [name, original] : {std::pair<std::string, Tensor>{"b.matrix", matrix}, {"a.vector", vector}}) {
    const SafetensorsEntry* entry = file.find(name);
    BOOST_REQUIRE(entry != nullptr);
    BOOST_TEST(std::string(st_dtype_name(entry->dtype)) == "F32");
    BOOST_TEST(entry->shape == original.shape());
    const Tensor back = file.read_f32(name);
    BOOST_TEST(back.shape() == original.shape());
    for (std::int64_t i = 0; i < original.numel(); ++i) {
      BOOST_TEST_REQUIRE(same_bits(back.data<float>()[i], original.data<float>()[i]), name << "[" << i << "]");
    }
  }
  BOOST_TEST(file.read_f32("c.empty").shape() == (Shape{0, 4}));
  BOOST_TEST(file.find("missing") == nullptr);
  const std::string missing = error_of([&] { file.read_f32("missing"); });
  BOOST_TEST(missing.find(path.string()) != std::string::npos);
  BOOST_TEST(missing.find("'missing'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bf16_writing_rounds_to_nearest_even) {
  Tensor t = Tensor::empty({4}, DType::F32);
  float* v = t.data<float>();
  v[0] = 1.0f;
  v[1] = std::bit_cast<float>(0x3f808000u);  // halfway between bf16 0x3f80 and 0x3f81: to even 0x3f80
  v[2] = std::bit_cast<float>(0x3f818000u);  // halfway between 0x3f81 and 0x3f82: to even 0x3f82
  v[3] = std::bit_cast<float>(0x3f808001u);  // just above halfway: up to 0x3f81
  const fs::path path = scratch("bf16.safetensors");
  write_safetensors(path, std::vector<SafetensorsTensor>{{"w", t}}, {}, StDType::BF16);
  const SafetensorsFile file(path);
  BOOST_TEST(std::string(st_dtype_name(file.entries()[0].dtype)) == "BF16");
  std::vector<std::uint16_t> bits(4);
  std::memcpy(bits.data(), file.raw_bytes(file.entries()[0]).data(), 8);
  BOOST_TEST(bits == (std::vector<std::uint16_t>{0x3f80, 0x3f80, 0x3f82, 0x3f81}), boost::test_tools::per_element());
  BOOST_CHECK_THROW(write_safetensors(path, std::vector<SafetensorsTensor>{{"w", t}}, {}, StDType::F16),
                    std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(f16_and_bf16_decode_known_bit_patterns) {
  const std::vector<std::uint16_t> f16 = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x3555, 0x8000, 0x7c00, 0xfc00};
  const std::vector<float> f16_expected = {1.0f,  -2.0f, 65504.0f, std::ldexp(1.0f, -24), std::ldexp(1023.0f, -24),
                                           std::ldexp(1.0f, -14), 0.333251953125f, -0.0f,
                                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  const std::vector<std::uint16_t> bf16 = {0x3f80, 0xc040, 0x4049, 0x0001, 0xff7f, 0x7f80};
  const std::vector<float> bf16_expected = {1.0f, -3.0f, 3.140625f, std::ldexp(1.0f, -133), -0x1.fep127f,
                                            std::numeric_limits<float>::infinity()};
  std::vector<std::uint8_t> data = u16_bytes(f16);
  const std::vector<std::uint8_t> b = u16_bytes(bf16);
  data.insert(data.end(), b.begin(), b.end());
  const fs::path path =
      handmade("halves.safetensors",
               R"({"h":{"dtype":"F16","shape":[2,5],"data_offsets":[0,20]},"b":{"dtype":"BF16","shape":[6],"data_offsets":[20,32]}})",
               data);
  const SafetensorsFile file(path);
  const Tensor h = file.read_f32("h");
  BOOST_TEST(h.shape() == (Shape{2, 5}));
  for (std::size_t i = 0; i < f16.size(); ++i) {
    BOOST_TEST(same_bits(h.data<float>()[i], f16_expected[i]), "F16 0x" << std::hex << f16[i]);
  }
  const Tensor bt = file.read_f32("b");
  for (std::size_t i = 0; i < bf16.size(); ++i) {
    BOOST_TEST(same_bits(bt.data<float>()[i], bf16_expected[i]), "BF16 0x" << std::hex << bf16[i]);
  }
  BOOST_TEST(std::isnan(f16_bits_to_f32(0x7e00)));
  BOOST_TEST(std::isnan(bf16_bits_to_f32(0x7fc0)));
}

BOOST_AUTO_TEST_CASE(damaged_files_are_refused_naming_the_file) {
  // A valid two-tensor file to damage.
  const fs::path good = scratch("good.safetensors");
  write_safetensors(good, std::vector<SafetensorsTensor>{{"x", filled({4, 4}, 0.0f)}, {"y", filled({8}, 1.0f)}}, {});
  const std::vector<std::uint8_t> bytes = file_bytes(good);

  struct Case {
    std::string label;
    fs::path path;
    std::vector<std::string> expected;  // substrings of the message besides the path
  };
  std::vector<Case> cases;
  {
    const fs::path p = scratch("truncated.safetensors");
    put_bytes(p, std::vector<std::uint8_t>(bytes.begin(), bytes.end() - 5));
    cases.push_back({"data cut short", p, {"'y'", "truncated"}});
  }
  {
    const fs::path p = scratch("short.safetensors");
    put_bytes(p, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 5));
    cases.push_back({"shorter than the length field", p, {"truncated"}});
  }
  {
    const fs::path p = scratch("header_cut.safetensors");
    put_bytes(p, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 30));
    cases.push_back({"header cut short", p, {"truncated", "header"}});
  }
  cases.push_back({"bad JSON", handmade("bad_json.safetensors", R"({"x": {"dtype": "F32", )", {}), {"not valid JSON"}});
  cases.push_back({"header not an object", handmade("array.safetensors", "[1, 2]", {}), {"JSON object"}});
  cases.push_back({"overlapping offsets",
                   handmade("overlap.safetensors",
                            R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::vector<std::uint8_t>(12)),
                   {"'x'", "'y'", "overlap"}});
  cases.push_back({"offsets past the data",
                   handmade("past.safetensors", R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                            std::vector<std::uint8_t>(12)),
                   {"'x'", "run past the end"}});
  cases.push_back({"offsets disagree with the shape",
                   handmade("size.safetensors", R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                            std::vector<std::uint8_t>(8)),
                   {"'x'", "needs 12"}});
  cases.push_back({"a gap between tensors",
                   handmade("gap.safetensors",
                            R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            std::vector<std::uint8_t>(12)),
                   {"'y'", "belong to no tensor"}});
  cases.push_back({"end before begin",
                   handmade("reversed.safetensors", R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})",
                            std::vector<std::uint8_t>(4)),
                   {"'x'", "end before"}});
  cases.push_back({"unknown dtype",
                   handmade("dtype.safetensors", R"({"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})",
                            std::vector<std::uint8_t>(1)),
                   {"'x'", "'Q4'"}});
  cases.push_back({"negative shape",
                   handmade("shape.safetensors", R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", {}),
                   {"'x'", "non-negative"}});
  cases.push_back({"huge header length", [&] {
                     std::vector<std::uint8_t> b(bytes);
                     const std::uint64_t n = std::uint64_t{1} << 40;
                     std::memcpy(b.data(), &n, 8);
                     const fs::path p = scratch("huge.safetensors");
                     put_bytes(p, b);
                     return p;
                   }(),
                   {"header length"}});

  for (const Case& c : cases) {
    const std::string message = error_of([&] { SafetensorsFile file(c.path); });
    BOOST_TEST_CONTEXT(c.label << ": " << message) {
      BOOST_TEST(message.rfind(c.path.string() + ": ", 0) == 0u);
      for (const std::string& part : c.expected) BOOST_TEST(message.find(part) != std::string::npos, part);
    }
  }
  const std::string missing = error_of([&] { SafetensorsFile file(scratch("nope.safetensors")); });
  BOOST_TEST(missing.find("nope.safetensors") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(integer_tensors_are_listed_but_not_read_as_weights) {
  const fs::path path = handmade("ints.safetensors",
                                 R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"__metadata__":{"format":"pt"}})",
                                 std::vector<std::uint8_t>(16));
  const SafetensorsFile file(path);
  BOOST_TEST(std::string(st_dtype_name(file.entries()[0].dtype)) == "I64");
  const std::string message = error_of([&] { file.read_f32("ids"); });
  BOOST_TEST(message.find(path.string()) != std::string::npos);
  BOOST_TEST(message.find("'ids'") != std::string::npos);
  BOOST_TEST(message.find("I64") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(writer_refuses_bad_input_and_leaves_no_file) {
  const fs::path path = scratch("refused.safetensors");
  const Tensor t = filled({2}, 0.0f);
  BOOST_CHECK_THROW(write_safetensors(path, std::vector<SafetensorsTensor>{{"w", t}, {"w", t}}, {}), std::invalid_argument);
  BOOST_CHECK_THROW(write_safetensors(path, std::vector<SafetensorsTensor>{{"__metadata__", t}}, {}), std::invalid_argument);
  BOOST_CHECK_THROW(write_safetensors(path, std::vector<SafetensorsTensor>{{"i", Tensor::empty({2}, DType::I32)}}, {}),
                    std::invalid_argument);
  BOOST_TEST(!fs::exists(path));
  BOOST_TEST(!fs::exists(path.string() + ".tmp"));
}
