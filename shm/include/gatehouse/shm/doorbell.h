// Doorbell: the eventfd a parked consumer sleeps on and its producers ring.
//
// An eventfd lives in a process's fd table, not in shared memory, so the
// process that starts the others (the supervisor, or a test) creates every
// doorbell and hands the fds down across fork/exec; a restarted process gets
// the same fd again. The fd is also what an Asio loop waits on
// (posix::stream_descriptor::async_wait(wait_read)).
#pragma once

#include <chrono>

namespace gatehouse::shm {

class Doorbell {
 public:
  /// A new non-blocking eventfd. `inheritable` leaves FD_CLOEXEC off so the
  /// fd survives exec into a child. Throws std::system_error.
  static Doorbell create(bool inheritable = false);
  /// Takes ownership of an fd received from a parent.
  static Doorbell adopt(int fd) noexcept { return Doorbell(fd); }

  Doorbell() = default;
  Doorbell(Doorbell&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Doorbell& operator=(Doorbell&& other) noexcept;
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;
  ~Doorbell();

  /// Wakes the sleeper (async-signal-safe: one write(2)).
  void ring() const noexcept;
  /// Sleeps until rung or `timeout` passes; clears the count. True if rung.
  bool wait(std::chrono::nanoseconds timeout) const noexcept;
  /// Clears a pending ring without sleeping (after an Asio wait completes).
  void drain() const noexcept;

  int fd() const noexcept { return fd_; }
  /// Gives up ownership (e.g. after passing the fd to a child).
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  explicit Doorbell(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace gatehouse::shm
