// For tests and fuzz targets that reach the shared-memory violation path
// (shm/violation.h) on purpose: while a ThrowingViolations lives, a
// violation throws ShmViolation (with the line the process would log)
// instead of aborting the test.
#pragma once

#include <stdexcept>
#include <string>

#include "gatehouse/shm/violation.h"

namespace gatehouse::testing {

struct ShmViolation : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ThrowingViolations {
 public:
  ThrowingViolations() : previous_(shm::set_violation_handler(&raise)) {}
  ~ThrowingViolations() { shm::set_violation_handler(previous_); }
  ThrowingViolations(const ThrowingViolations&) = delete;
  ThrowingViolations& operator=(const ThrowingViolations&) = delete;

 private:
  [[noreturn]] static void raise(const std::string& what) { throw ShmViolation(what); }
  shm::ViolationHandler previous_;
};

}  // namespace gatehouse::testing
