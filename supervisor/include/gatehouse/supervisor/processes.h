// Processes: what the supervisor does to the operating system's processes
// (start, signal, reap, run a command, read the clock), behind one small
// interface so that a test can drive the supervisor's loop against fakes
// and an injected clock (tests/supervisor/supervisor_test.cc).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::supervisor {

/// A child that has exited.
struct Exit {
  pid_t pid = 0;
  int status = 0;          ///< its wait status
  double cpu_seconds = 0;  ///< the user + system CPU time it spent in all
};

/// What a command run to completion said.
struct RunResult {
  int exit_code = -1;  ///< its exit status; -1 when it could not run, was killed or timed out
  std::string output;  ///< stdout and stderr, as interleaved
};

class Processes {
 public:
  virtual ~Processes() = default;

  /// Starts argv[0] (a path, no shell) with `argv`. The child keeps exactly
  /// `keep_fds` of the supervisor's fds, the default signal handling, and
  /// dies with the supervisor. Returns its pid, or -1 (errno set).
  virtual pid_t spawn(const std::vector<std::string>& argv, const std::vector<int>& keep_fds) = 0;

  virtual void kill(pid_t pid, int signo) = 0;

  /// One child that has exited, without waiting.
  virtual std::optional<Exit> reap() = 0;

  /// Runs argv[0] (a path, no shell) with `argv` to completion and captures
  /// what it prints; past `timeout` it is killed.
  virtual RunResult run(const std::vector<std::string>& argv,
                        std::chrono::milliseconds timeout) = 0;

  /// CLOCK_MONOTONIC, the clock of the children's heartbeats.
  virtual std::int64_t now_ns() = 0;
};

/// fork + exec, wait4, kill(2), CLOCK_MONOTONIC.
std::unique_ptr<Processes> system_processes();

}  // namespace gatehouse::supervisor
