#include "gatehouse/bridge/io_poller.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace gatehouse::bridge {

IoPoller::IoPoller() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

IoPoller::~IoPoller() {
  ::close(epoll_fd_);
}

void IoPoller::watch(int fd, bool writable) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLRDHUP | (writable ? EPOLLOUT : 0U);
  event.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) == 0) return;
  if (errno == ENOENT && ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) == 0) return;
  throw std::system_error(errno, std::generic_category(), "epoll_ctl");
}

void IoPoller::forget(int fd) noexcept {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

bool IoPoller::wait(std::chrono::nanoseconds timeout) noexcept {
  // Rounded up: a sub-millisecond timeout must not become a busy 0.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  epoll_event events[16];
  const int n = ::epoll_wait(epoll_fd_, events, 16, ms > 0x7fffffff ? -1 : static_cast<int>(ms));
  return n > 0;
}

}  // namespace gatehouse::bridge
