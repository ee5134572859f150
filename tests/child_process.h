// ChildProcess: a fork/exec'd helper for tests that need real processes.
// The child dies with the test (PR_SET_PDEATHSIG), and a ChildProcess that is
// destroyed while its child still runs kills and reaps it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::testing {

class ChildProcess {
 public:
  /// Starts `argv[0]` with `argv`. Open fds without FD_CLOEXEC are inherited.
  /// With `output_path`, the child's stdout and stderr go to that file.
  explicit ChildProcess(const std::vector<std::string>& argv, const std::string& output_path = {});
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  /// Sends `signal` (no-op once reaped).
  void kill(int signal) const;
  /// Waits up to `timeout` for the child to end; its raw wait status, or
  /// nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
};

/// "exited 0", "exited 3", "killed by signal 9": for assertion messages.
std::string describe_status(int status);

}  // namespace gatehouse::testing
