#include "gatehouse/supervisor/processes.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "gatehouse/base/clock.h"
#include "gatehouse/contract/gateway_segment.h"

namespace gatehouse::supervisor {
namespace {

std::vector<char*> c_argv(std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (std::string& a : argv) out.push_back(a.data());
  out.push_back(nullptr);
  return out;
}

/// In a forked child before exec: die with the supervisor (whose pid is
/// `parent`) and take the default signal mask back (the supervisor blocks
/// the signals its signalfd reads).
void become_child(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

class SystemProcesses final : public Processes {
 public:
  pid_t spawn(const std::vector<std::string>& args, const std::vector<int>& keep_fds) override {
    std::vector<std::string> copy = args;
    std::vector<char*> argv = c_argv(copy);  // built before fork: no allocation in the child
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid != 0) return pid;  // the parent, or -1
    become_child(parent);
    for (const int fd : keep_fds) ::fcntl(fd, F_SETFD, 0);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "gatehouse: cannot run %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }

  void kill(pid_t pid, int signo) override { ::kill(pid, signo); }

  std::optional<Exit> reap() override {
    int status = 0;
    rusage usage{};
    const pid_t pid = ::wait4(-1, &status, WNOHANG, &usage);
    if (pid <= 0) return std::nullopt;
    const auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return Exit{pid, status, seconds(usage.ru_utime) + seconds(usage.ru_stime)};
  }

  RunResult run(const std::vector<std::string>& args, std::chrono::milliseconds timeout) override {
    RunResult result;
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
      result.output = std::string("pipe: ") + std::strerror(errno);
      return result;
    }
    std::vector<std::string> copy = args;
    std::vector<char*> argv = c_argv(copy);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      become_child(parent);
      ::dup2(out[1], STDOUT_FILENO);  // dup2 clears close-on-exec on the copies
      ::dup2(out[1], STDERR_FILENO);
      ::execv(argv[0], argv.data());
      std::fprintf(stderr, "cannot run %s: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    ::close(out[1]);
    if (pid < 0) {
      result.output = std::string("fork: ") + std::strerror(errno);
      ::close(out[0]);
      return result;
    }
    // Read until the command closes its end (it exits), or the deadline.
    const std::int64_t deadline = now_ns() + timeout.count() * 1'000'000;
    bool timed_out = false;
    for (;;) {
      const std::int64_t left_ms = (deadline - now_ns()) / 1'000'000;
      if (left_ms <= 0) {
        timed_out = true;
        break;
      }
      pollfd p{out[0], POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left_ms));
      if (ready == 0 || (ready < 0 && errno == EINTR)) continue;
      if (ready < 0) break;
      char buffer[512];
      const ssize_t n = ::read(out[0], buffer, sizeof buffer);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        break;
      }
      result.output.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    if (timed_out) {
      ::kill(pid, SIGKILL);
      result.output += (result.output.empty() ? "" : "\n") + std::string(args[0]) +
                       " did not answer within " + std::to_string(timeout.count()) + " ms";
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    return result;
  }

  std::int64_t now_ns() override { return monotonic_ns(); }
};

}  // namespace

std::unique_ptr<Processes> system_processes() {
  return std::make_unique<SystemProcesses>();
}

}  // namespace gatehouse::supervisor
