// The conformance checks of the batched contract (docs/batch-contract.md):
// each drives the game service as the gateway's backend-bridge does, on a
// gateway-id of its own, and observes it through the demo protocol's echo
// (1001 -> 1002, same body, to the sender) and kick-me (1005 -> KICK).
#pragma once

#include <chrono>
#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace gatehouse::conformance {

struct Options {
  std::string target;           ///< HOST:PORT of the game service
  std::size_t sessions = 1000;  ///< for the many-sessions check
  /// How long any one wait for an expected event lasts (a failing game
  /// costs this; a passing one only its own speed).
  std::chrono::milliseconds patience{30'000};
};

struct CheckInfo {
  const char* name;
  const char* rule;  ///< what it checks, one line (the contract's section)
};

struct Result {
  std::string name;
  bool passed = false;
  std::string detail;  ///< what was seen (PASS) or why it failed
};

/// Every check, in the order run() runs them.
const std::vector<CheckInfo>& checks();

/// Runs the checks named in `only` (all when empty) against
/// options.target, one line per check to `out` as it ends:
///   PASS <name>: <detail>   or   FAIL <name>: <reason>
std::vector<Result> run(const Options& options, const std::vector<std::string>& only,
                        std::ostream& out);

}  // namespace gatehouse::conformance
