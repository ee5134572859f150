// What the kernel says about a gateway process, for the process_* metrics
// (docs/metrics.md): the names and meanings of Prometheus' own client
// libraries' process collector, read from /proc/PID by the supervisor for
// each of its processes (it may: they run as its user).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace gatehouse::supervisor {

struct ProcessStats {
  double cpu_seconds = 0;         ///< user + system CPU time
  double start_time_seconds = 0;  ///< since the Unix epoch
  double resident_bytes = 0;
  double open_fds = 0;
  std::optional<double> max_fds;  ///< the soft RLIMIT_NOFILE; none when unlimited
};

/// Reads /proc/`pid`/{stat,fd,limits}; nullopt when the process is gone (or
/// its files cannot be read).
std::optional<ProcessStats> read_process_stats(pid_t pid);

/// The fields of /proc/PID/stat the metrics use, in the kernel's units.
struct ProcStat {
  std::uint64_t user_ticks = 0;    ///< utime, field 14
  std::uint64_t system_ticks = 0;  ///< stime, field 15
  std::uint64_t start_ticks = 0;   ///< starttime, field 22: after boot
  std::uint64_t rss_pages = 0;     ///< rss, field 24
};
/// Parses /proc/PID/stat's line (the command name may hold spaces and
/// parentheses); nullopt when it is not one.
std::optional<ProcStat> parse_proc_stat(std::string_view text);
/// The soft limit of "Max open files" in /proc/PID/limits; nullopt when
/// unlimited or absent.
std::optional<std::uint64_t> parse_max_open_files(std::string_view limits);

}  // namespace gatehouse::supervisor
