#include "gatehouse/supervisor/routing_view.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>

namespace gatehouse::supervisor {
namespace {

std::string text(const char (&name)[metrics::kRoutingNameBytes]) {
  return {name, strnlen(name, metrics::kRoutingNameBytes)};
}

/// The merged state of an instance that `bridge_state` is one bridge's
/// view of: disabled wins, then live.
std::uint32_t merged_state(std::uint32_t so_far, std::uint32_t bridge_state) {
  if (so_far == metrics::kInstanceDisabled || bridge_state == metrics::kInstanceDisabled) {
    return metrics::kInstanceDisabled;
  }
  if (so_far == metrics::kInstanceLive || bridge_state == metrics::kInstanceLive) {
    return metrics::kInstanceLive;
  }
  return metrics::kInstanceRemoved;
}

}  // namespace

RoutingView merge_routing(std::span<const metrics::RoutingTable> tables) {
  RoutingView view;
  view.reachable.assign(tables.size(), 0);
  std::map<std::string, std::size_t> service_at;
  // (service, instance, removed) -> index in view.instances.
  std::map<std::tuple<std::string, std::string, bool>, std::size_t> instance_at;
  metrics::RoutingNames names{};
  for (std::size_t b = 0; b < tables.size(); ++b) {
    const metrics::RoutingTable& table = tables[b];
    if (!metrics::read_routing(table, names)) continue;
    const std::uint32_t bit = 1u << b;
    view.published |= bit;
    const std::uint32_t services = std::min(names.service_count, metrics::kMaxServiceRows);
    for (std::uint32_t s = 0; s < services; ++s) {
      const metrics::ServiceRow& row = names.services[s];
      const auto [at, added] = service_at.try_emplace(text(row.name), view.services.size());
      if (added) view.services.push_back({at->first});
      RoutedService& service = view.services[at->second];
      service.instances = std::max(service.instances, row.instances);
      for (std::size_t r = 0; r < service.moved.size(); ++r) service.moved[r] += row.moved[r];
    }
    const std::uint32_t rows = std::min(names.instance_count, metrics::kMaxInstanceRows);
    for (std::uint32_t i = 0; i < rows; ++i) {
      const metrics::InstanceRow& row = names.instances[i];
      const bool up = table.up[i].load(std::memory_order_relaxed) != 0;
      if (row.state == metrics::kInstanceLive && up) ++view.reachable[b];
      auto key = std::tuple(row.service < services ? text(names.services[row.service].name) : "",
                            text(row.name), row.state == metrics::kInstanceRemoved);
      const auto [at, added] = instance_at.try_emplace(std::move(key), view.instances.size());
      if (added) {
        view.instances.push_back(
            {std::get<0>(at->first), std::get<1>(at->first), row.state, /*up=*/true});
      }
      RoutedInstance& instance = view.instances[at->second];
      instance.state = merged_state(instance.state, row.state);
      instance.up = instance.up && up;
      instance.sessions += table.sessions[i].load(std::memory_order_relaxed);
      for (std::size_t c = 0; c < instance.counts.size(); ++c) instance.counts[c] += row.counts[c];
      instance.listed_by |= bit;
      if (row.state == metrics::kInstanceDisabled) instance.disabled_by |= bit;
    }
  }
  return view;
}

}  // namespace gatehouse::supervisor
