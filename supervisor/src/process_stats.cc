#include "gatehouse/supervisor/process_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace gatehouse::supervisor {
namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::optional<std::uint64_t> to_number(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

/// The machine's boot time, seconds since the epoch (/proc/stat's btime).
std::uint64_t boot_time_seconds() {
  static const std::uint64_t btime = [] {
    std::ifstream in("/proc/stat");
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("btime ")) return to_number(line.substr(6)).value_or(0);
    }
    return std::uint64_t{0};
  }();
  return btime;
}

/// Entries of /proc/PID/fd: the open file descriptors.
std::optional<std::uint64_t> count_fds(pid_t pid) {
  DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (dir == nullptr) return std::nullopt;
  std::uint64_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

}  // namespace

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  // "pid (comm) state ppid ...": comm is whatever the process named itself,
  // so the fields start after its last ')'.
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::istringstream fields{std::string(text.substr(close + 1))};
  ProcStat out;
  std::string field;
  for (int number = 3; fields >> field; ++number) {
    std::uint64_t* into = number == 14   ? &out.user_ticks
                          : number == 15 ? &out.system_ticks
                          : number == 22 ? &out.start_ticks
                          : number == 24 ? &out.rss_pages
                                         : nullptr;
    if (into == nullptr) continue;
    const auto value = to_number(field);
    if (!value) return std::nullopt;
    *into = *value;
    if (number == 24) return out;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> parse_max_open_files(std::string_view limits) {
  // "Max open files            1024                 524288               files"
  constexpr std::string_view kRow = "Max open files";
  const auto at = limits.find(kRow);
  if (at == std::string_view::npos) return std::nullopt;
  std::istringstream row{std::string(limits.substr(at + kRow.size()))};
  std::string soft;
  row >> soft;
  return to_number(soft);  // "unlimited" is none
}

std::optional<ProcessStats> read_process_stats(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  const auto stat_text = read_file(dir + "/stat");
  const auto stat = stat_text ? parse_proc_stat(*stat_text) : std::nullopt;
  const auto fds = count_fds(pid);
  if (!stat || !fds) return std::nullopt;
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  ProcessStats out;
  out.cpu_seconds = static_cast<double>(stat->user_ticks + stat->system_ticks) / ticks;
  out.start_time_seconds =
      static_cast<double>(boot_time_seconds()) + static_cast<double>(stat->start_ticks) / ticks;
  out.resident_bytes = static_cast<double>(stat->rss_pages) * page;
  out.open_fds = static_cast<double>(*fds);
  if (const auto limits = read_file(dir + "/limits")) {
    if (const auto max = parse_max_open_files(*limits)) out.max_fds = static_cast<double>(*max);
  }
  return out;
}

}  // namespace gatehouse::supervisor
