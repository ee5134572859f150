// gatehouse::legacy (gw::crypto) against independent values: the test's own
// RC4 (checked first against RFC 6229) and square-and-multiply in 128-bit
// arithmetic, plus a few constants computed outside this tree.
#include "gatehouse/crypto/legacy_crypto.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/reference_crypto.h"

namespace gatehouse::legacy {
namespace {

using client::testing::reference_dh;
using client::testing::reference_power;
using client::testing::ReferenceRc4;

std::vector<std::uint8_t> keystream(ReferenceRc4& rc4, std::size_t n) {
  std::vector<std::uint8_t> out(n);
  for (auto& b : out) b = rc4.next();
  return out;
}

TEST(ReferenceRc4, MatchesRfc6229FortyBitKey) {
  // RFC 6229 section 2, key length 40 bits, key 0x0102030405.
  const std::uint8_t key[] = {0x01, 0x02, 0x03, 0x04, 0x05};
  ReferenceRc4 rc4(key);
  const std::vector<std::uint8_t> stream = keystream(rc4, 0x110);
  const auto at = [&](std::size_t offset) {
    return std::vector<std::uint8_t>(stream.begin() + static_cast<std::ptrdiff_t>(offset),
                                     stream.begin() + static_cast<std::ptrdiff_t>(offset + 16));
  };
  EXPECT_EQ(at(0x000), (std::vector<std::uint8_t>{0xb2, 0x39, 0x63, 0x05, 0xf0, 0x3d, 0xc0, 0x27,
                                                  0xcc, 0xc3, 0x52, 0x4a, 0x0a, 0x11, 0x18, 0xa8}));
  EXPECT_EQ(at(0x010), (std::vector<std::uint8_t>{0x69, 0x82, 0x94, 0x4f, 0x18, 0xfc, 0x82, 0xd5,
                                                  0x89, 0xc4, 0x03, 0xa4, 0x7a, 0x0d, 0x09, 0x19}));
  EXPECT_EQ(at(0x0f0), (std::vector<std::uint8_t>{0x28, 0xcb, 0x11, 0x32, 0xc9, 0x6c, 0xe2, 0x86,
                                                  0x42, 0x1d, 0xca, 0xad, 0xb8, 0xb6, 0x9e, 0xae}));
  EXPECT_EQ(at(0x100), (std::vector<std::uint8_t>{0x1c, 0xfc, 0xf6, 0x2b, 0x03, 0xed, 0xdb, 0x64,
                                                  0x1d, 0x77, 0xdf, 0xcf, 0x7f, 0x8d, 0x8c, 0x93}));
}

TEST(ReferencePower, MatchesKnownValues) {
  // Computed with Python's pow(b, e, 0x7FFFFFC3).
  EXPECT_EQ(reference_power(2, 0x7ffffffe, kDhPrime), 536871827u);
  EXPECT_EQ(reference_power(3, 1234567891, kDhPrime), 10130473u);
  EXPECT_EQ(reference_power(3, kDhPrime - 1, kDhPrime), 1u);  // Fermat
}

TEST(LegacyDh, SmallCases) {
  EXPECT_EQ(dh_power(3, 1), 3u);
  EXPECT_EQ(dh_power(3, 0), 1u);
  EXPECT_EQ(dh_power(0, 5), 0u);
  EXPECT_EQ(dh_power(2, 10), 1024u);
  EXPECT_EQ(dh_public(1), kDhGenerator);
  EXPECT_EQ(kDhPrime, 0x7FFFFFC3u);
  EXPECT_EQ(kDhGenerator, 3u);
}

TEST(LegacyDh, ThirtyOneBitExponentsMatchSquareAndMultiply) {
  for (const std::uint64_t e :
       {0x7ffffffeULL, 0x40000001ULL, 0x7fffffc2ULL, 1234567891ULL, 0x55555555ULL, 0x2aaaaaaaULL}) {
    EXPECT_EQ(dh_power(2, e), reference_power(2, e, kDhPrime)) << "e=" << e;
  }
  EXPECT_EQ(dh_power(2, 0x7ffffffe), 536871827u);
}

TEST(LegacyDh, SixtyThreeBitSecretsMatch) {
  for (const std::uint64_t x :
       {0x7fffffffffffffffULL, 0x123456789abcdefULL, 0x4000000000000000ULL}) {
    EXPECT_EQ(dh_public(x), reference_power(3, x, kDhPrime)) << "x=" << x;
    EXPECT_EQ(dh_power(0x6543210f, x), reference_power(0x6543210f, x, kDhPrime)) << "x=" << x;
  }
}

TEST(LegacyDh, NegativeAndLargeBasesReduceModP) {
  const std::uint64_t e = 0x6abcdef1;
  EXPECT_EQ(dh_power(-1, 1), kDhPrime - 1);
  EXPECT_EQ(dh_power(-1, 2), 1u);
  EXPECT_EQ(dh_power(-5, e), reference_power(kDhPrime - 5, e, kDhPrime));
  EXPECT_EQ(dh_power(INT32_MIN, e),
            reference_power(kDhPrime - (std::uint64_t{1} << 31) % kDhPrime, e, kDhPrime));
  EXPECT_EQ(dh_power(INT32_MIN, e), reference_dh(INT32_MIN, e));
  EXPECT_EQ(dh_power(std::int64_t{kDhPrime} + 2, e), reference_power(2, e, kDhPrime));
  EXPECT_EQ(dh_power(kDhPrime, e), 0u);
  EXPECT_EQ(dh_power(-std::int64_t{kDhPrime}, e), 0u);
}

TEST(LegacyDh, BothSidesAgree) {
  for (int round = 0; round < 8; ++round) {
    const std::uint64_t a = dh_random_secret();
    const std::uint64_t b = dh_random_secret();
    EXPECT_EQ(dh_power(dh_public(a), b), dh_power(dh_public(b), a));
    EXPECT_EQ(dh_power(dh_public(a), b),
              reference_power(reference_power(3, a, kDhPrime), b, kDhPrime));
  }
}

TEST(LegacyDh, RandomSecretsAreNonZeroBelow2To63AndVary) {
  std::set<std::uint64_t> seen;
  for (int round = 0; round < 64; ++round) {
    const std::uint64_t x = dh_random_secret();
    EXPECT_NE(x, 0u);
    EXPECT_LT(x, std::uint64_t{1} << 63);
    seen.insert(x);
  }
  EXPECT_GT(seen.size(), 60u);
}

TEST(LegacyRc4, KeyStringIsDhAndDecimal) {
  EXPECT_EQ(rc4_key_string(123456), "DH123456");
  EXPECT_EQ(rc4_key_string(0), "DH0");
  EXPECT_EQ(rc4_key_string(kDhPrime - 1), "DH2147483586");
  EXPECT_EQ(rc4_key_string(4294967295u), "DH4294967295");
}

TEST(LegacyRc4, StateMatchesReferenceAcrossApplyCalls) {
  Rc4State state{};
  state.init(123456);
  ReferenceRc4 reference("DH123456");

  std::vector<std::byte> plain(1000);
  for (std::size_t k = 0; k < plain.size(); ++k) plain[k] = static_cast<std::byte>(k * 7 + 3);
  std::vector<std::byte> expected = plain;
  reference.apply(expected);

  std::vector<std::byte> out(plain.size());
  std::size_t pos = 0;
  for (const std::size_t chunk : {1u, 7u, 0u, 255u, 256u, 481u}) {
    if (chunk % 2 == 0) {  // out of place
      state.apply(plain.data() + pos, out.data() + pos, chunk);
    } else {  // in place
      std::copy(plain.begin() + static_cast<std::ptrdiff_t>(pos),
                plain.begin() + static_cast<std::ptrdiff_t>(pos + chunk),
                out.begin() + static_cast<std::ptrdiff_t>(pos));
      state.apply(out.data() + pos, out.data() + pos, chunk);
    }
    pos += chunk;
  }
  ASSERT_EQ(pos, plain.size());
  EXPECT_EQ(out, expected);
}

TEST(LegacyRc4, DecryptionInvertsEncryption) {
  Rc4State enc{};
  Rc4State dec{};
  enc.init(987654321);
  dec.init(987654321);
  std::vector<std::byte> data(100, std::byte{0x42});
  const std::vector<std::byte> original = data;
  enc.apply(data.data(), data.data(), data.size());
  EXPECT_NE(data, original);
  dec.apply(data.data(), data.data(), 60);
  dec.apply(data.data() + 60, data.data() + 60, 40);
  EXPECT_EQ(data, original);
}

}  // namespace
}  // namespace gatehouse::legacy
