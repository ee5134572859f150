#include "gatehouse/bench/process_memory.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace gatehouse::bench {
namespace {

std::optional<pid_t> parse_pid(std::string_view text) {
  pid_t pid = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
  if (ec != std::errc{} || end != text.data() + text.size() || pid <= 0) return std::nullopt;
  return pid;
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    if (const auto pid = parse_pid(entry.path().filename().string())) out.push_back(*pid);
  }
  return out;
}

/// The fields of /proc/<pid>/stat after comm (field 2), which may hold
/// spaces and parentheses: they start after the last ')'. The first is the
/// state (field 3).
std::optional<std::istringstream> stat_fields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return std::nullopt;
  const auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  return std::istringstream(text.substr(close + 1));
}

std::optional<pid_t> parent_of(pid_t pid) {
  auto rest = stat_fields(pid);
  std::string state;
  pid_t ppid = 0;
  if (!rest || !(*rest >> state >> ppid)) return std::nullopt;
  return ppid;
}

/// utime + stime (fields 14 and 15) in clock ticks.
std::optional<std::uint64_t> cpu_ticks_of(pid_t pid) {
  auto rest = stat_fields(pid);
  if (!rest) return std::nullopt;
  std::string skip;
  for (int field = 3; field <= 13; ++field) *rest >> skip;
  std::uint64_t utime = 0, stime = 0;
  if (!(*rest >> utime >> stime)) return std::nullopt;
  return utime + stime;
}

/// The value in kB of the line starting with `key` (e.g. "VmRSS:").
std::optional<std::uint64_t> kib_field(const std::string& path, std::string_view key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, key.size(), key) != 0) continue;
    std::istringstream value(line.substr(key.size()));
    std::uint64_t kib = 0;
    if (value >> kib) return kib;
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::vector<pid_t> process_tree(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  for (const pid_t pid : all_pids()) {
    if (const auto ppid = parent_of(pid)) children.emplace(*ppid, pid);
  }
  std::vector<pid_t> out;
  if (!std::filesystem::exists("/proc/" + std::to_string(root))) return out;
  out.push_back(root);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto [first, last] = children.equal_range(out[i]);
    for (auto it = first; it != last; ++it) out.push_back(it->second);
  }
  return out;
}

std::vector<pid_t> processes_by_comm_prefix(std::string_view prefix, pid_t exclude) {
  std::vector<pid_t> out;
  for (const pid_t pid : all_pids()) {
    if (pid == exclude) continue;
    std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    if (std::getline(in, comm) && comm.compare(0, prefix.size(), prefix) == 0) out.push_back(pid);
  }
  return out;
}

std::vector<pid_t> resolve(const ProcessSelection& selection) {
  std::vector<pid_t> out;
  for (const pid_t pid : selection.pids) {
    if (std::filesystem::exists("/proc/" + std::to_string(pid))) out.push_back(pid);
  }
  for (const pid_t root : selection.trees) {
    const auto tree = process_tree(root);
    out.insert(out.end(), tree.begin(), tree.end());
  }
  if (!selection.comm_prefix.empty()) {
    const auto named = processes_by_comm_prefix(selection.comm_prefix, ::getpid());
    out.insert(out.end(), named.begin(), named.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  std::erase(out, ::getpid());
  return out;
}

MemorySample sample_memory(std::span<const pid_t> pids) {
  MemorySample sample;
  std::uint64_t pss = 0;
  bool pss_complete = true;
  for (const pid_t pid : pids) {
    const std::string dir = "/proc/" + std::to_string(pid);
    const auto rss = kib_field(dir + "/status", "VmRSS:");
    if (!rss) continue;  // gone, or a kernel thread
    sample.rss_kib += *rss;
    ++sample.processes;
    if (const auto p = kib_field(dir + "/smaps_rollup", "Pss:")) {
      pss += *p;
    } else {
      pss_complete = false;
    }
  }
  if (pss_complete && sample.processes > 0) sample.pss_kib = pss;
  return sample;
}

std::uint64_t cpu_time_us(std::span<const pid_t> pids) {
  static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  std::uint64_t ticks = 0;
  for (const pid_t pid : pids) ticks += cpu_ticks_of(pid).value_or(0);
  return ticks * 1'000'000 /
         static_cast<std::uint64_t>(ticks_per_second > 0 ? ticks_per_second : 100);
}

}  // namespace gatehouse::bench
