// How long a test waits for something it expects to happen: a reply, a
// close, a log line, a process to exit. Generous, because every test must
// pass on a machine fully loaded by other processes, where a step that takes
// a millisecond may take seconds; a wait ends at the event, so the bound
// costs time only when the test fails. A test that checks that something
// does NOT happen waits a short, stated time instead.
#pragma once

#include <chrono>
#include <thread>

namespace gatehouse::testing {

inline constexpr std::chrono::seconds kPatience{30};

/// Polls `done` every 20 ms until it holds or `timeout` passes; whether it
/// held.
template <class Done>
bool wait_until(const Done& done, std::chrono::milliseconds timeout = kPatience) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace gatehouse::testing
