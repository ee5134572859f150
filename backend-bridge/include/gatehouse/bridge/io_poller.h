// IoPoller: what the bridge's main thread sleeps on when it parks: its own
// doorbell (workers' records, news from other threads) and the sockets of
// the game-service connections it drives itself (GrpcChannel, grpc_h2.h).
// Level-triggered epoll, used only to wake: whoever owns a socket reads and
// writes it in its own duty-cycle pass (Upstream::flush), so a wait
// dispatches nothing and a socket with bytes left keeps the next wait short.
#pragma once

#include <chrono>

namespace gatehouse::bridge {

class IoPoller {
 public:
  /// Throws std::system_error when epoll cannot be created.
  IoPoller();
  ~IoPoller();
  IoPoller(const IoPoller&) = delete;
  IoPoller& operator=(const IoPoller&) = delete;

  /// Wakes a wait() when `fd` is readable (or closed), and writable too
  /// while `writable` (a connect in progress, output the kernel refused).
  /// Calling it again changes the interest.
  void watch(int fd, bool writable);
  /// Before the fd is closed.
  void forget(int fd) noexcept;
  /// Sleeps until a watched fd is ready or `timeout` passes. True if one is.
  bool wait(std::chrono::nanoseconds timeout) noexcept;

 private:
  int epoll_fd_ = -1;
};

}  // namespace gatehouse::bridge
