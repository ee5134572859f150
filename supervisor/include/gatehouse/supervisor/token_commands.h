// The token subcommands of `gatehouse` (docs/login.md):
//   gatehouse token-keygen --out STEM      STEM.key (secret, 0600), STEM.pub
//   gatehouse token --key STEM.key --uid N [--ttl SECONDS] [--audience A]
//   gatehouse token-hash FILE              a plaintext token table, hashed, on stdout
#pragma once

#include <optional>

namespace gatehouse::supervisor {

/// Runs the subcommand argv[1] names and returns its exit code; nullopt when
/// argv[1] is not one of them (the gateway itself runs).
std::optional<int> run_token_command(int argc, const char* const* argv);

}  // namespace gatehouse::supervisor
