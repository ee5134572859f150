// http_get: a blocking HTTP/1.0 GET on 127.0.0.1 for tests (the gateway's
// /metrics, Prometheus' query API). Returns the body, empty on failure.
#pragma once

#include <cstdint>
#include <string>

#include "local_port.h"  // free_port(), for the servers these tests start

namespace gatehouse::testing {

std::string http_get(std::uint16_t port, const std::string& path);

/// The value of the sample `name` (labels included, as exposed) in a
/// Prometheus text exposition; -1 when absent.
double metric_sample(const std::string& exposition, const std::string& name);

}  // namespace gatehouse::testing
