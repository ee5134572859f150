// Who a child process is: its role and, for workers, its index. Restart
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
  std::uint32_t index = 0;  ///< the worker's index; 0 for the frontend and the bridge

  /// For logs: "frontend", "worker-3", "bridge".
  std::string name() const {
    switch (role) {
      case Role::kFrontend:
        return "frontend";
      case Role::kWorker:
        return "worker-" + std::to_string(index);
      case Role::kBridge:
        return "bridge";
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
