// How long a test waits for something it expects to happen: a reply, a
// close, a log line, a process to exit. Generous, because every test must
// pass on a machine fully loaded by other processes, where a step that takes
// a millisecond may take seconds; a wait ends at the event, so the bound
// costs time only when the test fails. A test that checks that something
// does NOT happen waits a short, stated time instead.
#pragma once

#include <chrono>

namespace gatehouse::testing {

inline constexpr std::chrono::seconds kPatience{30};

}  // namespace gatehouse::testing
