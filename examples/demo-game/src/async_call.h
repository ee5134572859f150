// What every call and session of GameServer is made of: the Endpoint a
// session shows the registry (server_core.h), the Decision an operation on it
// returns, and AsyncCall, one call on gRPC's completion-queue API, whose
// completions the server's polling threads hand back.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include <grpcpp/support/status.h>

#include "gatehouse/game/game_server.h"

namespace gatehouse::game::detail {

/// The gRPC operation a decision calls for, started once every lock is released.
enum class Step : std::uint8_t { kNone, kWrite, kFinish };

/// The outcome of one operation on one reactor.
struct Decision {
  bool accepted = false;  ///< the frame was queued / the end was requested
  Step step = Step::kNone;
  bool cancel = false;  ///< the queue overflowed: cancel the call (a slow consumer)
};

/// One session as the registry sees it: a gonet2 stream (StreamReactor) or a
/// session on a batched link (BatchSession). The operations are decided
/// under Core::mu_; perform() runs after it is released.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual StreamHandle handle() const noexcept = 0;
  virtual Decision push(std::span<const std::byte> message) = 0;
  /// A Kick, then the end of the session.
  virtual Decision kick() = 0;
  virtual Decision end(grpc::Status status) = 0;
  /// After a Decision with `cancel`, still under Core::mu_.
  virtual void cancel() = 0;
  virtual void perform(Step step) = 0;
};

/// A call served on the completion-queue API. Each operation it starts
/// carries one of its tags; the server's threads hand the completion back.
class AsyncCall {
 public:
  enum class Op : std::uint8_t {
    kAccept,  ///< the requested call arrived (or, !ok, never will: shutdown)
    kRead,
    kWrite,
    kFinish,
    kDone,  ///< AsyncNotifyWhenDone: the call is over, finished or cancelled
  };
  struct Tag {
    AsyncCall* call;
    Op op;
  };
  /// On a thread polling the queue; may free the call. The call is over
  /// once its done tag came and no operation is outstanding; the accept
  /// counts as one until accepted() returned (with more than one serving
  /// thread, the done tag of a call cancelled at once may come meanwhile).
  void on_completion(Op op, bool ok) {
    if (op == Op::kAccept) {
      if (!ok) {  // shutting down: no call, no other tag
        never_came();
        return;
      }
      begin_op();
      accepted();
    } else {
      completed(op, ok);
    }
    const std::uint32_t left = op == Op::kDone
                                   ? pending_.fetch_or(kOver, std::memory_order_acq_rel) | kOver
                                   : pending_.fetch_sub(1, std::memory_order_acq_rel) - 1;
    if (left == kOver) over();
  }

 protected:
  ~AsyncCall() = default;
  /// Counts an operation from its decision (before it is started) to its
  /// completion: the call cannot be over in between.
  void begin_op() noexcept { pending_.fetch_add(1, std::memory_order_relaxed); }

  /// The requested call will not come (shutdown).
  virtual void never_came() = 0;
  /// The call arrived: ask for the next one, then start this one.
  virtual void accepted() = 0;
  /// Read, Write, Finish or the done tag completed.
  virtual void completed(Op op, bool ok) = 0;
  /// The call is over and nothing of it is outstanding; once.
  virtual void over() = 0;

 private:
  static constexpr std::uint32_t kOver = 1u << 31;  ///< the done tag came
  std::atomic<std::uint32_t> pending_{0};           ///< outstanding operations, | kOver
};

}  // namespace gatehouse::game::detail
