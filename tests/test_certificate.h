// A self-signed certificate for the tls and wss listeners under test, made
// with OpenSSL's API (no `openssl` binary on a bare machine): an ECDSA P-256
// key, names `localhost` and 127.0.0.1, valid from an hour ago for a day.
#pragma once

#include <string>

namespace gatehouse::testing {

struct TestCertificate {
  std::string cert;  ///< PEM certificate (also the CA a client trusts)
  std::string key;   ///< PEM private key, mode 0600
};

/// Writes `NAME.pem` and `NAME.key` into `dir`. Throws std::runtime_error.
TestCertificate make_test_certificate(const std::string& dir, const std::string& name = "tls");

}  // namespace gatehouse::testing
