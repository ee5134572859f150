// http_get: a blocking HTTP/1.0 request on 127.0.0.1 for tests (the
// gateway's /metrics, /healthz and /ready, Prometheus' query API).
#pragma once

#include <cstdint>
#include <string>

#include "local_port.h"  // free_port(), for the servers these tests start

namespace gatehouse::testing {

struct HttpResponse {
  int status = 0;  ///< 0: no response (nothing listens, or it closed first)
  std::string body;
};
/// `method` `path`, and the response, read to the server's close.
HttpResponse http_request(std::uint16_t port, const std::string& method, const std::string& path);

/// GET `path`: the body, empty on failure.
std::string http_get(std::uint16_t port, const std::string& path);

/// The value of the sample `name` (labels included, as exposed) in a
/// Prometheus text exposition; -1 when absent.
double metric_sample(const std::string& exposition, const std::string& name);

}  // namespace gatehouse::testing
