// Fuzz target: bytes as a client would put them in its login's
// client_certificate, verified as a signed token (docs/login.md) and hashed
// as a token-table entry. Nothing may crash or read out of bounds; a token
// that verifies names a user id >= 1, and only the test vector's key could
// have signed it.
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gatehouse/token/signed_token.h"
#include "gatehouse/token/token_file.h"

namespace token = gatehouse::token;

namespace {

/// docs/login.md's test-vector key (seed 0..31), so the corpus's vector
/// token verifies and the fuzzer can mutate a valid one.
const token::Verifier& verifier() {
  static const token::Verifier v = [] {
    if (sodium_init() < 0) std::abort();
    unsigned char seed[32];
    for (int i = 0; i < 32; ++i) seed[i] = static_cast<unsigned char>(i);
    token::PublicKey pk;
    unsigned char sk[token::kSecretKeyBytes];
    crypto_sign_seed_keypair(pk.bytes.data(), sk, seed);
    return token::Verifier({pk}, "demo");
  }();
  return v;
}

}  // namespace

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const token::Verdict v = verifier().verify(text, 1'800'000'000);
  if (v.ok && v.uid <= 0) std::abort();
  if (token::hash_token(text).size() != 11 + 64) std::abort();
  return 0;
}
