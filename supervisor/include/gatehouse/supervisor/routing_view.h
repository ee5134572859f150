// RoutingView: every bridge's routing table as one (docs/architecture.md,
// "Bridge shards"), for gatehousectl backends and status, /metrics and
// /ready.
//
// Each bridge publishes its own metrics::RoutingTable (MetricsBlock::routing
// by bridge): the same game services and instances by name, each in its own
// row order, with the sessions, counts and reachability of the users it
// serves. merge_routing() joins the rows by (service, instance name):
//   sessions, counts, moved   summed over the bridges
//   ServiceRow::instances     the most any bridge has (each routes to all)
//   up                        only if every bridge that lists it reaches it
//   state                     disabled if any bridge has it disabled (an
//                             operator's switch not taken everywhere yet),
//                             else live if any has it live, else removed
// A removed row stays apart from a current one of the same name: within one
// bridge the sessions of an instance that left end beside its namesake that
// came back (with another contract, say), and the metrics show them apart.
// The order is bridge 0's rows, then the rows only later bridges have, so
// one bridge's view is its own table as it is.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/contract/metrics.h"

namespace gatehouse::supervisor {

/// A game service as the bridges route to it.
struct RoutedService {
  std::string name;            ///< "" for the backend lines
  std::int64_t instances = 0;  ///< live ones (new sessions may go there): the most of any bridge
  std::array<std::uint64_t, metrics::kMoveReasonCount> moved{};  ///< summed, by MoveReason
};

/// A game-service instance as the bridges route to it.
struct RoutedInstance {
  std::string service;  ///< its service's name ("" for the backend lines)
  std::string name;
  std::uint32_t state = metrics::kInstanceRemoved;  ///< metrics::InstanceState, merged
  bool up = false;                                  ///< every bridge that lists it reaches it
  std::int64_t sessions = 0;                        ///< summed
  std::array<std::uint64_t, metrics::kInstanceCounterCount> counts{};  ///< summed
  std::uint32_t listed_by = 0;    ///< bit b: bridge b has a row for it
  std::uint32_t disabled_by = 0;  ///< bit b: bridge b has it disabled
};

struct RoutingView {
  std::uint32_t published = 0;  ///< bit b: bridge b has published its table
  std::vector<RoutedService> services;
  std::vector<RoutedInstance> instances;
  /// By bridge: the instances it reaches among those it has live (its own
  /// view), 0 for one that has not published.
  std::vector<std::uint32_t> reachable;
};

/// The tables of bridges 0, 1, ... (`tables[b]` is bridge b's) as one.
RoutingView merge_routing(std::span<const metrics::RoutingTable> tables);

}  // namespace gatehouse::supervisor
