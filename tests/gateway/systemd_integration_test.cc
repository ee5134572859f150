// systemd: the unit files pass `systemd-analyze verify`, and the supervisor
// speaks the notify protocol to a stand-in for systemd (our own
// NOTIFY_SOCKET): READY=1, WATCHDOG=1 while healthy, RELOADING=1 / READY=1
// around a SIGHUP reload, STOPPING=1 on SIGTERM, STATUS= lines throughout.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;

std::string run(const std::string& command, int& status) {
  std::FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char line[512];
  while (std::fgets(line, sizeof line, p) != nullptr) out += line;
  status = ::pclose(p);
  return out;
}

TEST(SystemdUnits, VerifyCleanly) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("gatehouse-units-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  // The unit as the build configured it names the installed path; point it
  // at this build's binary.
  std::ifstream in(GATEHOUSE_UNIT);
  std::string unit((std::istreambuf_iterator<char>(in)), {});
  ASSERT_NE(unit.find("--instance %i"), std::string::npos) << "one segment per unit instance";
  ASSERT_NE(unit.find("ExecStart=" GATEHOUSE_INSTALL_SBIN " "), std::string::npos)
      << "ExecStart names the installed gatehouse";
  ASSERT_NE(unit.find("ExecReload=" GATEHOUSE_INSTALL_CTL " --instance %i reload\n"),
            std::string::npos)
      << "a reload goes through gatehousectl, which fails when the configuration is refused";
  ASSERT_NE(unit.find("RuntimeDirectory=gatehouse/%i\n"), std::string::npos)
      << "the admin socket's default directory";
  for (const auto& [installed, built] :
       {std::pair{"=" GATEHOUSE_INSTALL_SBIN " ", "=" GATEHOUSE_BIN_DIR "/gatehouse "},
        std::pair{"=" GATEHOUSE_INSTALL_CTL " ", "=" GATEHOUSE_BIN_DIR "/gatehousectl "}}) {
    const std::string from = installed;
    for (auto at = unit.find(from); at != std::string::npos; at = unit.find(from, at)) {
      unit.replace(at, from.size(), built);
    }
  }
  std::ofstream(dir / "gatehouse@.service") << unit;
  // The template, and an instance of it as systemctl would start it.
  for (const char* name : {"gatehouse@.service", "gatehouse@main.service"}) {
    int status = 0;
    const std::string out =
        run("MANPATH=" GATEHOUSE_MAN_DIR " " SYSTEMD_ANALYZE " verify " + (dir / name).string(),
            status);
    EXPECT_EQ(status, 0) << name << ": " << out;
    EXPECT_EQ(out, "") << name << ": systemd-analyze warnings";
  }
  // The sandbox keeps its score (lower is better; the unit without its
  // sandboxing directives scores 9.2, Debian 12's nginx.service 9.6).
  int status = 0;
  const std::string security = run(SYSTEMD_ANALYZE " security --offline=yes --no-pager " +
                                       (dir / "gatehouse@main.service").string(),
                                   status);
  const std::string marker = "Overall exposure level for gatehouse@main.service: ";
  const auto at = security.find(marker);
  ASSERT_NE(at, std::string::npos) << security;
  EXPECT_LE(std::stod(security.substr(at + marker.size())), 1.4) << security;
  std::filesystem::remove_all(dir);
}

/// The datagrams a NOTIFY_SOCKET receives.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = (std::filesystem::temp_directory_path() /
             ("gatehouse-notify-" + std::to_string(::getpid())))
                .string();
    ::unlink(path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("notify socket: cannot bind " + path_);
    }
    timeval tv{0, 100'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  /// Reads until a message contains `token` (true) or `timeout` passes;
  /// every message read is appended to `seen`.
  bool wait_for(const std::string& token, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      char buffer[4096];
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) continue;
      const std::string message(buffer, static_cast<std::size_t>(n));
      seen.push_back(message);
      if (message.find(token) != std::string::npos) return true;
    }
    return false;
  }
  std::vector<std::string> seen;

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(SystemdNotify, ReadyWatchdogReloadingStoppingInOrder) {
  FakeGameService game({.echo = true});
  NotifySocket notify;
  ::setenv("NOTIFY_SOCKET", notify.path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);
  GatewayProcess gateway({game.port(), 2, {}, {}});
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");

  ASSERT_TRUE(notify.wait_for("READY=1", kPatience));
  EXPECT_NE(notify.seen.back().find("STATUS=serving"), std::string::npos) << notify.seen.back();
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", kPatience)) << "no watchdog ping";
  ASSERT_TRUE(notify.wait_for("STATUS=serving: 0 connections, 0 sessions, 2 workers", kPatience));

  ::kill(gateway.pid(), SIGHUP);
  ASSERT_TRUE(notify.wait_for("RELOADING=1", kPatience));
  ASSERT_TRUE(notify.wait_for("READY=1", kPatience)) << gateway.log();

  ::kill(gateway.pid(), SIGTERM);
  ASSERT_TRUE(notify.wait_for("STOPPING=1", kPatience));
  const auto status = gateway.terminate(kPatience);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

/// A line of /proc/PID/status ("Seccomp:\t2" -> "2").
std::string proc_status(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) {
      const auto value = line.find_first_not_of(" \t", field.size() + 1);
      return value == std::string::npos ? "" : line.substr(value);
    }
  }
  return "(no " + field + ")";
}

/// An environment variable set for the processes started in its scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::vector<std::string> unit_sandbox() {
  return {UNIT_SANDBOX, GATEHOUSE_UNIT, SYSTEMD_ANALYZE, "--"};
}

// The unit's sandbox is real: the same tool that runs the gateway below
// makes a namespace fail, as RestrictNamespaces=yes does under systemd.
TEST(UnitSandbox, ItsRestrictionsBite) {
  int status = 0;
  std::string command;
  for (const std::string& w : unit_sandbox()) command += w + " ";
  const std::string out = run(command + "/usr/bin/unshare --net /bin/true", status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("Operation not permitted"), std::string::npos) << out;
  EXPECT_EQ(run(command + "/bin/true", status), "");
  EXPECT_EQ(status, 0) << "the sandbox alone lets a program run";
}

// The gateway starts, serves, reloads (new workers forked and executed under
// the filters) and drains under its own unit's system-call filter,
// restrictions and capability bounding set (unit_sandbox.cc).
TEST(UnitSandbox, TheGatewayServesUnderItsUnitsRestrictions) {
  FakeGameService game({.echo = true});
  GatewayOptions options{game.port(), 2, {}, {}};
  options.wrapper = unit_sandbox();
  // In the sanitizer build: LeakSanitizer's exit check stops the process's
  // threads with ptrace, which @system-service refuses (the gateway itself
  // never calls it); leaks are the other tests' business.
  std::optional<GatewayProcess> started;
  {
    const char* asan = std::getenv("ASAN_OPTIONS");
    const ScopedEnv no_leak_check("ASAN_OPTIONS",
                                  std::string(asan == nullptr ? "" : asan) + ":detect_leaks=0");
    started.emplace(options);
  }
  GatewayProcess& gateway = *started;
  for (const pid_t pid : {gateway.pid(), gateway.frontend_pid(), gateway.bridge_pid()}) {
    EXPECT_EQ(proc_status(pid, "Seccomp"), "2") << "pid " << pid << ": filtered";
    EXPECT_EQ(proc_status(pid, "NoNewPrivs"), "1") << "pid " << pid;
    EXPECT_EQ(proc_status(pid, "CapBnd"), "0000000000000400")
        << "pid " << pid << ": CAP_NET_BIND_SERVICE only";
  }
  const auto serves = [&gateway](const std::string& udid) {
    client::Client c;
    c.connect("127.0.0.1", gateway.port());
    if (!c.key_exchange(kPatience).has_value() || !c.login(udid, "", kPatience).ok()) return false;
    if (!c.send(1001, client::to_bytes("ping"))) return false;
    const auto reply = c.receive_proto(1002, kPatience);
    return reply.has_value();
  };
  EXPECT_TRUE(serves("sandboxed-1")) << gateway.log();
  ::kill(gateway.pid(), SIGHUP);
  ASSERT_TRUE(gateway.wait_log("reload complete")) << gateway.log();
  EXPECT_TRUE(serves("sandboxed-2")) << gateway.log();
  ::kill(gateway.pid(), SIGTERM);
  const auto status = gateway.terminate(kPatience);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << gateway.log();
  for (const char* refused : {"Operation not permitted", "Bad system call", "unit_sandbox:"}) {
    EXPECT_EQ(gateway.log().find(refused), std::string::npos) << refused << ":\n" << gateway.log();
  }
}

}  // namespace
}  // namespace gatehouse::testing
