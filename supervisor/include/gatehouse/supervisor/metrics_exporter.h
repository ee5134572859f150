// MetricsExporter: the HTTP endpoint of a gateway instance (metrics-listen):
//   /metrics  every process's metrics (docs/metrics.md): on each scrape it
//             sums the processes' shards in the segment, reads the rings'
//             descriptors and /proc for each process; prometheus-cpp's
//             TextSerializer writes the text
//   /healthz  the supervisor is alive and its loop turns
//   /ready    whether to send it players (health.h; docs/operations.md)
// served by an HttpServer on a thread of its own, never the supervisor's
// loop.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/supervisor/health.h"
#include "gatehouse/supervisor/http_server.h"

namespace gatehouse::supervisor {

class MetricsExporter {
 public:
  /// Listens on `address` ("127.0.0.1:9477"; port 0 picks one). Throws
  /// std::runtime_error naming the address when it cannot bind. `segment`
  /// and `health` outlive it.
  MetricsExporter(GatewaySegment& segment, const Health& health, const std::string& address);
  ~MetricsExporter();

  /// The port actually bound.
  std::uint16_t port() const { return server_->port(); }

  /// What a GET of `path` answers (the server's thread).
  HttpServer::Response answer(std::string_view path) const;

 private:
  class Collector;
  HttpServer::Response ready() const;

  GatewaySegment& segment_;
  const Health& health_;
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<HttpServer> server_;  // last: stopped before the rest goes
};

}  // namespace gatehouse::supervisor
