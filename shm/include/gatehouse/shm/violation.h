// What a process does when a value it reads from shared memory breaks the
// contract: another process (buggy, compromised, or killed by a bit flip)
// wrote a size, index, position or count no correct writer produces.
//
// Every such check in shm/ and contract/ ends in violation(): one line on
// stderr naming the region, the field and the value, then std::abort(). The
// reader never acts on the value (no out-of-bounds access, no undefined
// behaviour), and the supervisor replaces it as after any crash. Only the
// process that read the value dies: its peers go on.
//
// The handler is replaceable so that a fuzz target or a test can reach the
// violation path without dying: a handler may throw (every reader path that
// can report a violation lets exceptions through); it must not return.
#pragma once

#include <string>

namespace gatehouse::shm {

/// Called with the description of a violation; must not return.
using ViolationHandler = void (*)(const std::string& what);

/// Reports a violation to the handler (by default: the line, then abort).
[[noreturn]] void violation(const std::string& what);

/// Installs `handler` (null: the default) and returns the previous one.
/// Not thread-safe: for tests and fuzz targets, before the code under test runs.
ViolationHandler set_violation_handler(ViolationHandler handler) noexcept;

}  // namespace gatehouse::shm
