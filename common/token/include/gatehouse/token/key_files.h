// Token key files (docs/login.md): one line of hex, after any '#' comment
// lines. `gatehouse token-keygen` writes them; the gateway reads the public
// ones (login = signed:FILE[,FILE...]), the minter the secret one.
//
// Who may change a key decides who may log in as anyone, so a public key file
// that another user could write (group- or world-writable) is refused, and
// so is a secret key file that another user could read.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/token/signed_token.h"

namespace gatehouse::token {

/// Throw std::runtime_error naming the file when it is missing, not a
/// regular file, too open (see above), or not one key's hex.
PublicKey read_public_key(const std::string& path);
SecretKey read_secret_key(const std::string& path);
/// Every key of "FILE[,FILE...]".
std::vector<PublicKey> read_public_keys(std::string_view paths);

/// Writes `stem`.key (0600) and `stem`.pub (0644), refusing to replace an
/// existing file; returns the two paths' texts for the caller to print.
void write_key_pair(const std::string& stem, const SecretKey& key);

}  // namespace gatehouse::token
