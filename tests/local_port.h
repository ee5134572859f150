// Loopback ports for tests that start a server process of their own.
#pragma once

#include <chrono>
#include <cstdint>

namespace gatehouse::testing {

/// A loopback TCP port that was free a moment ago: the child binds it next
/// (gRPC servers set SO_REUSEADDR, so our closed socket does not hold it).
std::uint16_t free_port();

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, at
/// most `timeout`; whether it did.
bool wait_listening(int port, std::chrono::milliseconds timeout);

}  // namespace gatehouse::testing
