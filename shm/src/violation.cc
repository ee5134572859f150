#include "gatehouse/shm/violation.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace gatehouse::shm {
namespace {

void log_and_abort(const std::string& what) {
  // stderr is where every process logs (unbuffered): the line is out before
  // the abort.
  std::fprintf(stderr, "gatehouse[%d]: shared-memory violation: %s; exiting\n",
               static_cast<int>(::getpid()), what.c_str());
  std::abort();
}

ViolationHandler g_handler = log_and_abort;

}  // namespace

void violation(const std::string& what) {
  g_handler(what);
  std::abort();  // a handler that returned broke its contract
}

ViolationHandler set_violation_handler(ViolationHandler handler) noexcept {
  const ViolationHandler previous = g_handler;
  g_handler = handler != nullptr ? handler : log_and_abort;
  return previous;
}

}  // namespace gatehouse::shm
