// unit_sandbox UNIT SYSTEMD_ANALYZE -- PROGRAM ARGS...
//
// Runs PROGRAM under the kernel-enforced restrictions that the systemd unit
// file UNIT asks for, applied the way systemd applies them, so that a test
// can show the gateway starts and serves under its own unit's sandbox on a
// machine where systemd is not PID 1:
//   SystemCallFilter=        allow-lists and ~deny-lists, groups expanded by
//                            `systemd-analyze syscall-filter` (systemd's own
//                            table of what @system-service means);
//   SystemCallErrorNumber=   what a filtered call returns (default: the
//                            process is killed, as systemd does);
//   SystemCallArchitectures=native;
//   MemoryDenyWriteExecute=  no mapping both writable and executable;
//   RestrictAddressFamilies= socket() of another family fails;
//   RestrictNamespaces=yes   no new namespace;
//   RestrictRealtime=yes     no realtime scheduling;
//   CapabilityBoundingSet=   every other capability dropped for good;
//   NoNewPrivileges=yes.
// Each filter is its own seccomp program, as systemd loads them: the kernel
// takes the strictest verdict of all. Not applied here: what needs a mount
// namespace (ProtectSystem=, PrivateTmp=, ...) and LockPersonality= (the
// gateway never calls personality()).
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "unit_sandbox: %s\n", what.c_str());
  std::exit(125);
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// The [Service] directives of a unit file: name -> each assignment's value.
std::multimap<std::string, std::string> service_directives(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read " + path);
  std::multimap<std::string, std::string> out;
  bool service = false;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      service = line == "[Service]";
      continue;
    }
    const auto eq = line.find('=');
    if (service && eq != std::string::npos) out.emplace(line.substr(0, eq), line.substr(eq + 1));
  }
  return out;
}

/// systemd's syscall groups (`systemd-analyze syscall-filter`): "@name"
/// at the start of a line, then its members indented (calls or groups).
std::map<std::string, std::vector<std::string>> syscall_groups(const std::string& analyze) {
  // (It says on stderr that it cannot list the calls no group names.)
  const std::string command = analyze + " syscall-filter --no-pager 2>/dev/null";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) fail("cannot run " + command);
  std::map<std::string, std::vector<std::string>> groups;
  std::string current;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    if (line.empty()) {
      current.clear();
    } else if (line[0] == '@') {
      current = line;
    } else if (!current.empty()) {
      const auto w = words(line);
      if (!w.empty() && w[0][0] != '#') groups[current].push_back(w[0]);
    }
  }
  if (::pclose(pipe) != 0 || groups.empty()) fail("no syscall groups from " + command);
  return groups;
}

void expand(const std::map<std::string, std::vector<std::string>>& groups, const std::string& name,
            std::set<std::string>& out) {
  if (name[0] != '@') {
    out.insert(name);
    return;
  }
  const auto g = groups.find(name);
  if (g == groups.end()) fail("unknown syscall group " + name);
  for (const std::string& member : g->second) expand(groups, member, out);
}

int errno_named(const std::string& name) {
  static const std::map<std::string, int> known = {
      {"EPERM", EPERM}, {"EACCES", EACCES}, {"ENOSYS", ENOSYS}, {"EINVAL", EINVAL}};
  const auto it = known.find(name);
  if (it == known.end()) fail("SystemCallErrorNumber=" + name + " is not one this tool knows");
  return it->second;
}

/// A condition on argument `index` (SCMP_A0()... are C compound literals).
scmp_arg_cmp arg(unsigned index, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
  return scmp_arg_cmp{index, op, a, b};
}

void add(scmp_filter_ctx ctx, std::uint32_t action, const char* call,
         std::vector<scmp_arg_cmp> conditions = {}) {
  const int nr = ::seccomp_syscall_resolve_name(call);
  if (nr == __NR_SCMP_ERROR) return;  // not a call of this architecture
  const int rc = ::seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(conditions.size()),
                                          conditions.data());
  if (rc != 0 && rc != -EEXIST)
    fail(std::string("seccomp rule for ") + call + ": " + std::strerror(-rc));
}

void load(scmp_filter_ctx ctx, const char* what) {
  const int rc = ::seccomp_load(ctx);
  ::seccomp_release(ctx);
  if (rc != 0) fail(std::string("loading the ") + what + " filter: " + std::strerror(-rc));
}

/// SystemCallFilter=: systemd's rules. The first assignment decides the
/// kind: an allow-list (everything else fails) or a deny-list ("~");
/// later allow-lists add, later deny-lists remove.
void apply_syscall_filter(const std::multimap<std::string, std::string>& unit,
                          const std::string& analyze) {
  const auto [first, last] = unit.equal_range("SystemCallFilter");
  if (first == last) return;
  const auto groups = syscall_groups(analyze);
  bool allow_list = false;
  std::set<std::string> calls;
  for (auto it = first; it != last; ++it) {
    std::string value = it->second;
    const bool deny = !value.empty() && value[0] == '~';
    if (deny) value.erase(0, 1);
    std::set<std::string> named;
    for (const std::string& w : words(value)) expand(groups, w, named);
    if (it == first) allow_list = !deny;
    if (allow_list == !deny) {
      calls.insert(named.begin(), named.end());
    } else {
      for (const std::string& c : named) calls.erase(c);
    }
  }
  const auto err = unit.find("SystemCallErrorNumber");
  const std::uint32_t refuse =
      err == unit.end() ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_ERRNO(errno_named(err->second));
  scmp_filter_ctx ctx = ::seccomp_init(allow_list ? refuse : SCMP_ACT_ALLOW);
  for (const std::string& c : calls) add(ctx, allow_list ? SCMP_ACT_ALLOW : refuse, c.c_str());
  load(ctx, "SystemCallFilter");
}

bool yes(const std::multimap<std::string, std::string>& unit, const std::string& name) {
  const auto it = unit.find(name);
  return it != unit.end() && (it->second == "yes" || it->second == "true");
}

/// The restrictions systemd enforces with seccomp besides the filter.
void apply_restrictions(const std::multimap<std::string, std::string>& unit) {
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
  const std::uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  if (yes(unit, "MemoryDenyWriteExecute")) {
    add(ctx, refuse, "mmap",
        {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC | PROT_WRITE, PROT_EXEC | PROT_WRITE)});
    add(ctx, refuse, "mprotect", {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)});
    add(ctx, refuse, "pkey_mprotect", {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)});
    add(ctx, refuse, "shmat", {arg(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)});
  }
  if (const auto it = unit.find("RestrictAddressFamilies"); it != unit.end()) {
    std::set<int> allowed;
    for (const std::string& w : words(it->second)) {
      if (w == "AF_INET")
        allowed.insert(AF_INET);
      else if (w == "AF_INET6")
        allowed.insert(AF_INET6);
      else if (w == "AF_UNIX")
        allowed.insert(AF_UNIX);
      else if (w == "AF_NETLINK")
        allowed.insert(AF_NETLINK);
      else
        fail("RestrictAddressFamilies: " + w + " is not one this tool knows");
    }
    // Every family below AF_MAX that is not allowed fails as it does under
    // systemd (EAFNOSUPPORT).
    for (int family = 0; family < AF_MAX; ++family) {
      if (allowed.count(family) != 0) continue;
      add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket",
          {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))});
    }
  }
  if (yes(unit, "RestrictNamespaces")) {
    add(ctx, refuse, "setns");
    // clone3's flags are in memory, out of a filter's reach: systemd makes it
    // ENOSYS, and glibc falls back to clone.
    add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3");
    for (const scmp_datum_t flag :
         {scmp_datum_t{CLONE_NEWNS}, scmp_datum_t{CLONE_NEWUTS}, scmp_datum_t{CLONE_NEWIPC},
          scmp_datum_t{CLONE_NEWUSER}, scmp_datum_t{CLONE_NEWPID}, scmp_datum_t{CLONE_NEWNET},
          scmp_datum_t{CLONE_NEWCGROUP}}) {
      add(ctx, refuse, "unshare", {arg(0, SCMP_CMP_MASKED_EQ, flag, flag)});
      add(ctx, refuse, "clone", {arg(0, SCMP_CMP_MASKED_EQ, flag, flag)});
    }
  }
  if (yes(unit, "RestrictRealtime")) {
    for (const int policy : {SCHED_FIFO, SCHED_RR}) {
      add(ctx, refuse, "sched_setscheduler",
          {arg(1, SCMP_CMP_EQ, static_cast<scmp_datum_t>(policy))});
    }
  }
  load(ctx, "restrictions");
}

/// CapabilityBoundingSet=: every capability not named leaves the bounding
/// set, so not even root regains it across execve.
void apply_capability_bounding_set(const std::multimap<std::string, std::string>& unit) {
  const auto it = unit.find("CapabilityBoundingSet");
  if (it == unit.end()) return;
  std::set<int> keep;
  for (const std::string& w : words(it->second)) {
    if (w == "CAP_NET_BIND_SERVICE")
      keep.insert(CAP_NET_BIND_SERVICE);
    else
      fail("CapabilityBoundingSet: " + w + " is not one this tool knows");
  }
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (keep.count(cap) == 0 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      fail("dropping capability " + std::to_string(cap) + ": " + std::strerror(errno));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || std::strcmp(argv[3], "--") != 0) {
    std::fprintf(stderr, "usage: unit_sandbox UNIT SYSTEMD_ANALYZE -- PROGRAM ARGS...\n");
    return 125;
  }
  const auto unit = service_directives(argv[1]);
  apply_capability_bounding_set(unit);
  if (yes(unit, "NoNewPrivileges") && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    fail(std::string("no_new_privs: ") + std::strerror(errno));
  }
  // The order systemd loads them in does not matter to the verdict; the
  // syscall filter goes last so that this tool's own calls are not in it.
  apply_restrictions(unit);
  apply_syscall_filter(unit, argv[2]);
  ::execv(argv[4], argv + 4);
  fail(std::string("exec ") + argv[4] + ": " + std::strerror(errno));
}
