// Tensor: ownership, views, reshape, typed access and bf16 rounding.
#define BOOST_TEST_MODULE tensor
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "core/tensor.h"

using loom::DType;
using loom::Tensor;

BOOST_AUTO_TEST_CASE(empty_zeros_and_describe) {
  Tensor t = Tensor::zeros({2, 3, 4});
  BOOST_TEST(t.numel() == 24);
  BOOST_TEST(t.nbytes() == 96u);
  BOOST_TEST(t.dim(-1) == 4);
  BOOST_TEST(t.owning());
  BOOST_TEST(t.describe() == "[2, 3, 4] f32 cpu");
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(t.raw()) % 64 == 0u);
  for (std::int64_t i = 0; i < t.numel(); ++i) BOOST_TEST(t.data<float>()[i] == 0.0f);
  BOOST_CHECK_THROW(t.dim(3), std::out_of_range);
  BOOST_TEST(!Tensor().defined());
}

BOOST_AUTO_TEST_CASE(views_share_storage_and_outlive_parent) {
  Tensor rows;
  {
    Tensor t = Tensor::empty({4, 3}, DType::I32);
    for (int i = 0; i < 12; ++i) t.data<std::int32_t>()[i] = i;
    rows = t.slice_rows(1, 3);
    Tensor flat = t.reshape({12});
    flat.data<std::int32_t>()[3] = 100;  // element (1, 0)
  }
  BOOST_TEST(rows.shape() == loom::Shape({2, 3}));
  BOOST_TEST(rows.data<std::int32_t>()[0] == 100);
  BOOST_TEST(rows.data<std::int32_t>()[5] == 8);
  Tensor v = rows.view(2, {3});
  BOOST_TEST(v.data<std::int32_t>()[0] == 5);
  BOOST_CHECK_THROW(rows.view(4, {3}), std::out_of_range);
  BOOST_CHECK_THROW(rows.reshape({7}), std::invalid_argument);
  BOOST_CHECK_THROW(rows.slice_rows(1, 3), std::out_of_range);
}

BOOST_AUTO_TEST_CASE(wrap_is_non_owning_and_clone_is_deep) {
  float buffer[6] = {1, 2, 3, 4, 5, 6};
  Tensor w = Tensor::wrap(buffer, {2, 3}, DType::F32);
  BOOST_TEST(!w.owning());
  Tensor c = w.clone();
  buffer[0] = 42;
  BOOST_TEST(w.data<float>()[0] == 42.0f);
  BOOST_TEST(c.data<float>()[0] == 1.0f);
  BOOST_TEST(c.owning());
}

BOOST_AUTO_TEST_CASE(typed_access_checks_dtype) {
  Tensor t = Tensor::empty({2}, DType::BF16);
  BOOST_CHECK_THROW(t.data<float>(), std::logic_error);
  BOOST_TEST(t.nbytes() == 4u);
  BOOST_TEST(loom::dtype_size(DType::I8) == 1u);
}

BOOST_AUTO_TEST_CASE(bf16_rounds_to_nearest_even) {
  BOOST_TEST(loom::to_bf16(1.0f).bits == 0x3f80);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
  BOOST_TEST(loom::to_bf16(1.0f + std::ldexp(1.0f, -8)).bits == 0x3f80);
  // 1 + 3*2^-8 is halfway too: the even neighbour is 1 + 2^-6.
  BOOST_TEST(loom::to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)).bits == 0x3f82);
  BOOST_TEST(loom::from_bf16(loom::to_bf16(-2.5f)) == -2.5f);
  BOOST_TEST(std::isnan(loom::from_bf16(loom::to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  BOOST_TEST(std::isinf(loom::from_bf16(loom::to_bf16(std::numeric_limits<float>::infinity()))));
}
