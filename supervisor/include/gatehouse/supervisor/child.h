// Who a child process is: its role and its index among its role's. Restart
// bookkeeping, metrics and the control block's status slots go by this,
// never by a name string; name() is only for logs.
#pragma once

#include <cstdint>
#include <string>

#include "gatehouse/contract/metrics.h"

namespace gatehouse::supervisor {

enum class Role { kFrontend, kWorker, kBridge };

struct ChildId {
  Role role;
  std::uint32_t index = 0;  ///< the worker's, frontend's or bridge's index

  /// For logs and the process metrics: "frontend", "frontend-1" (the first
  /// keeps the name it had before there were several), "worker-3", "bridge",
  /// "bridge-1".
  std::string name() const {
    switch (role) {
      case Role::kFrontend:
        return index == 0 ? "frontend" : "frontend-" + std::to_string(index);
      case Role::kWorker:
        return "worker-" + std::to_string(index);
      case Role::kBridge:
        return index == 0 ? "bridge" : "bridge-" + std::to_string(index);
    }
    return "?";
  }

  /// The `component` label of gatehouse_process_restarts_total.
  metrics::Component component() const {
    switch (role) {
      case Role::kFrontend:
        return metrics::kFrontend;
      case Role::kWorker:
        return metrics::kWorker;
      case Role::kBridge:
        return metrics::kBridge;
    }
    return metrics::kWorker;
  }

  friend bool operator==(const ChildId&, const ChildId&) = default;
};

}  // namespace gatehouse::supervisor
