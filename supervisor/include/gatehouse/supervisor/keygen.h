// `gatehouse keygen --out FILE`: a new gateway key pair for the modern
// exchange's version 2 (docs/protocol-modern.md): FILE holds the private key
// (mode 0600, for gateway-key), FILE.pub the public key clients pin
// (gatehouse-client --gateway-key FILE.pub). Never overwrites a file.
#pragma once

#include <string>
#include <vector>

namespace gatehouse::supervisor {

/// What the command prints and its exit code (0 ok, 1 the files could not be
/// written, 2 usage).
struct KeygenResult {
  int exit_code = 0;
  std::string output;  ///< to stdout when exit_code is 0, else to stderr
};
/// `args` are the words after "keygen".
KeygenResult keygen_command(const std::vector<std::string>& args);

}  // namespace gatehouse::supervisor
