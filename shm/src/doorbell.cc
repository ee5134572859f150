#include "gatehouse/shm/doorbell.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace gatehouse::shm {

Doorbell Doorbell::create(bool inheritable) {
  const int fd = ::eventfd(0, EFD_NONBLOCK | (inheritable ? 0 : EFD_CLOEXEC));
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  return Doorbell(fd);
}

Doorbell& Doorbell::operator=(Doorbell&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Doorbell::~Doorbell() {
  if (fd_ >= 0) ::close(fd_);
}

void Doorbell::ring() const noexcept {
  const std::uint64_t one = 1;
  // EAGAIN means the counter is saturated, i.e. already rung: nothing to do.
  [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);
}

bool Doorbell::wait(std::chrono::nanoseconds timeout) const noexcept {
  pollfd p{fd_, POLLIN, 0};
  const auto ns = timeout.count() < 0 ? 0 : timeout.count();
  const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  const int rc = ::ppoll(&p, 1, &ts, nullptr);  // EINTR counts as a spurious wakeup
  if (rc <= 0) return false;
  drain();
  return true;
}

void Doorbell::drain() const noexcept {
  std::uint64_t count;
  [[maybe_unused]] const ssize_t n = ::read(fd_, &count, sizeof count);
}

}  // namespace gatehouse::shm
