// The memory and CPU time of the gateway under load, read from /proc: the
// gateway is several processes (supervisor, frontend, workers, bridge), so
// its footprint is a sum over a set of pids chosen at sampling time (a worker
// restarted mid-run has a new pid, and the CPU time of one that exited
// mid-run drops out of the sum).
//
// RSS counts the shared-memory segment once per process that touched it; PSS
// (from smaps_rollup) charges each shared page to its sharers in proportion,
// so the PSS sum is the honest total. Both are reported.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::bench {

/// Which processes make up "the gateway"; any combination, resolved at each
/// sample, duplicates counted once.
struct ProcessSelection {
  std::vector<pid_t> pids;   ///< exactly these
  std::vector<pid_t> trees;  ///< these and all their descendants
  std::string comm_prefix;   ///< every process whose /proc/<pid>/comm starts with this
  bool empty() const noexcept { return pids.empty() && trees.empty() && comm_prefix.empty(); }
};

struct MemorySample {
  std::uint64_t rss_kib = 0;  ///< sum of VmRSS
  /// Sum of Pss; nullopt when smaps_rollup is unreadable for any of them.
  std::optional<std::uint64_t> pss_kib;
  std::size_t processes = 0;  ///< how many processes were summed
};

/// `root` and every live descendant of it (from the ppid in /proc/*/stat).
std::vector<pid_t> process_tree(pid_t root);
/// Every process whose comm starts with `prefix`, except `exclude`.
std::vector<pid_t> processes_by_comm_prefix(std::string_view prefix, pid_t exclude);
/// The pids `selection` names right now (sorted, unique, existing), never
/// this process itself.
std::vector<pid_t> resolve(const ProcessSelection& selection);
/// VmRSS and Pss of `pids`; processes that vanished meanwhile are skipped.
MemorySample sample_memory(std::span<const pid_t> pids);
/// User + system CPU time of `pids` (all their threads) so far, in
/// microseconds; processes that vanished meanwhile are skipped.
std::uint64_t cpu_time_us(std::span<const pid_t> pids);

}  // namespace gatehouse::bench
