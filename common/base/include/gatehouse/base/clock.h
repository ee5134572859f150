// The one clock the gateway processes compare across process boundaries.
#pragma once

#include <cstdint>

namespace gatehouse {

/// CLOCK_MONOTONIC in ns: comparable across processes (heartbeats in the
/// control block, deadlines handed from one process to another).
std::int64_t monotonic_ns() noexcept;

}  // namespace gatehouse
