// A gateway segment for the bridge's unit tests: unique name, small rings,
// the settings a bridge reads (workers, backends, waits).
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "gatehouse/contract/gateway_segment.h"

namespace gatehouse::bridge::testing {

inline Settings test_settings(std::uint32_t workers, std::vector<std::string> backends = {}) {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = workers;
  s.max_connections = 16;
  s.ring_bytes = 1 << 16;
  s.drain_timeout_ms = 5000;
  s.backend_wait_ms = 60000;
  s.game_backlog_bytes = 4u << 20;
  s.numbering = FrameNumbering::kGonet2;
  s.backend_count = static_cast<std::uint32_t>(backends.size());
  for (std::size_t b = 0; b < backends.size(); ++b) {
    std::snprintf(s.backends[b], sizeof s.backends[b], "%s", backends[b].c_str());
  }
  return s;
}

inline GatewaySegment make_segment(const Settings& settings) {
  static std::atomic<int> count{0};
  const std::string name = "gatehouse-test-bridge-" + std::to_string(::getpid()) + "-" +
                           std::to_string(count.fetch_add(1));
  return GatewaySegment::create(name, settings);
}

}  // namespace gatehouse::bridge::testing
