// OpenSSL 3 marks the low-level RC4 and BN calls deprecated; they are exactly
// what a byte-compatible legacy mode needs, and RC4_KEY is a plain struct we
// can keep in shared memory (EVP contexts are opaque heap objects).
#define OPENSSL_SUPPRESS_DEPRECATED
#include "gatehouse/crypto/legacy_crypto.h"

#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/rc4.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace gatehouse::legacy {

static_assert(sizeof(RC4_INT) == sizeof(std::uint32_t));

namespace {

void unpack(const Rc4State& from, RC4_KEY& to) noexcept {
  to.x = from.x;
  to.y = from.y;
  for (int i = 0; i < 256; ++i) to.data[i] = from.data[i];
}

void pack(const RC4_KEY& from, Rc4State& to) noexcept {
  to.x = static_cast<std::uint8_t>(from.x);
  to.y = static_cast<std::uint8_t>(from.y);
  for (int i = 0; i < 256; ++i) to.data[i] = static_cast<std::uint8_t>(from.data[i]);
}

}  // namespace

std::uint64_t dh_random_secret() {
  std::uint64_t x = 0;
  while (x == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&x), sizeof x) != 1) {
      throw std::runtime_error("RAND_bytes failed");
    }
    x >>= 1;  // [1, 2^63): the size gonet2 drew its secrets from
  }
  return x;
}

std::uint32_t dh_power(std::int64_t base, std::uint64_t exponent) {
  std::int64_t reduced = base % std::int64_t{kDhPrime};
  if (reduced < 0) reduced += kDhPrime;
  struct Free {
    void operator()(BIGNUM* b) const { BN_free(b); }
    void operator()(BN_CTX* c) const { BN_CTX_free(c); }
  };
  thread_local std::unique_ptr<BN_CTX, Free> ctx(BN_CTX_new());
  std::unique_ptr<BIGNUM, Free> b(BN_new()), e(BN_new()), m(BN_new()), r(BN_new());
  if (!ctx || !b || !e || !m || !r) throw std::bad_alloc();
  BN_set_word(b.get(), static_cast<BN_ULONG>(reduced));
  BN_set_word(e.get(), static_cast<BN_ULONG>(exponent));
  BN_set_word(m.get(), kDhPrime);
  if (BN_mod_exp(r.get(), b.get(), e.get(), m.get(), ctx.get()) != 1) {
    throw std::runtime_error("BN_mod_exp failed");
  }
  return static_cast<std::uint32_t>(BN_get_word(r.get()));
}

std::string rc4_key_string(std::uint32_t shared_key) {
  return "DH" + std::to_string(shared_key);
}

void Rc4State::init(std::uint32_t shared_key) noexcept {
  const std::string key = rc4_key_string(shared_key);
  RC4_KEY state;
  RC4_set_key(&state, static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(key.data()));
  pack(state, *this);
}

void Rc4State::apply(const std::byte* in, std::byte* out, std::size_t n) noexcept {
  RC4_KEY state;
  unpack(*this, state);
  RC4(&state, n, reinterpret_cast<const unsigned char*>(in), reinterpret_cast<unsigned char*>(out));
  pack(state, *this);
}

}  // namespace gatehouse::legacy
