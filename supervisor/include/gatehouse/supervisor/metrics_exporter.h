// MetricsExporter: the one Prometheus endpoint of a gateway instance. On each
// scrape it sums the processes' shards in the segment (docs/metrics.md) and
// reads the rings' descriptors; prometheus-cpp's Exposer serves the text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gatehouse/contract/gateway_segment.h"

namespace prometheus {
class Exposer;
}

namespace gatehouse::supervisor {

class MetricsExporter {
 public:
  /// Listens on `address` ("127.0.0.1:9477"; port 0 picks one). Throws
  /// std::runtime_error naming the address when it cannot bind.
  MetricsExporter(GatewaySegment& segment, const std::string& address);
  ~MetricsExporter();

  /// The port actually bound.
  std::uint16_t port() const;

 private:
  class Collector;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<Collector> collector_;
};

}  // namespace gatehouse::supervisor
