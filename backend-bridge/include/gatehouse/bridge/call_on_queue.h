// Calls to game services on gRPC's completion-queue API, shared by both
// upstreams (gonet2_upstream.h, batch_upstream.h).
//
//   main thread                      CallQueue's thread (the "gRPC thread")
//   QueuedCall::begin / close /      CompletionQueue::Next -> Tag{call, op}
//   write_locked (under mutex_)        -> CallOnQueue::on_completion(op, ok)
//                                           -> on_read / on_done (the upstream)
//
// The bridge's one gRPC thread polls the queue and runs every completion
// inline (a game's message goes on towards the worker rings from there),
// where the callback API would hand each one over from the polling thread to
// another, a wakeup per message each way (docs/benchmarks.md, item 9).
//
// Back-pressure (issue 20): before each read a call asks whether the worker
// rings it feeds are backed up (backed_up_locked()); if so it starts no read
// and waits, with nothing in flight for it, until the main thread resume()s
// it. gRPC's flow control then holds the game's writes in the game's
// process. A paused call still ends: cancel(), or a write that fails, takes
// its status at once (there is no read to fail and take it).
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/support/async_stream.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gatehouse/base/clock.h"
#include "gatehouse/bridge/upstream.h"

namespace gatehouse::bridge {

/// The channel to a game service (HOST:PORT) for few calls with large
/// messages (a batched link, the auth service; the gonet2 contract's stream
/// per session has its own transport, grpc_h2.h): one that comes back is
/// used again within ~2 s (see the definition).
std::shared_ptr<grpc::Channel> game_channel(const std::string& address);

class CallQueue;

/// The calls of one owner (an upstream, the auth client) on the CallQueue.
/// Their callbacks reach the owner, so it waits for its own calls to be over
/// (CallQueue::wait_for_calls(group)) before it goes; an upstream of an
/// instance that left goes while the others' calls go on.
class CallGroup {
 public:
  explicit CallGroup(CallQueue& queue) noexcept : queue_(queue) {}
  CallGroup(const CallGroup&) = delete;
  CallGroup& operator=(const CallGroup&) = delete;
  CallQueue& queue() const noexcept { return queue_; }

 private:
  friend class CallQueue;
  CallQueue& queue_;
  std::size_t live_ = 0;  // guarded by the queue's mutex
};

/// The completion queue every game call lives on, the thread that polls it,
/// and the count of calls started and not over (the owners wait for them).
class CallQueue {
 public:
  CallQueue();
  /// wait_for_calls(), then shuts the queue down and joins its thread. Cancel
  /// the calls first (Upstream::cancel_all), or this waits for them to end.
  ~CallQueue();
  CallQueue(const CallQueue&) = delete;
  CallQueue& operator=(const CallQueue&) = delete;

  grpc::CompletionQueue& queue() noexcept { return queue_; }
  /// Blocks until every call started on the queue is over.
  void wait_for_calls();
  /// Blocks until every call of `group` is over: after it, none of them
  /// reaches its owner any more.
  void wait_for_calls(const CallGroup& group);
  /// `group`'s calls started and not over yet (any thread).
  std::size_t calls_live(const CallGroup& group);

 private:
  friend class CallOnQueue;
  void call_began(CallGroup& group);
  void call_ended(CallGroup& group);

  grpc::CompletionQueue queue_;
  std::mutex mutex_;
  std::condition_variable calls_over_;
  std::size_t calls_live_ = 0;  // guarded by mutex_
  std::thread thread_;
};

/// A call on the CallQueue: what its tags stand for, handed back by the gRPC
/// thread.
class CallOnQueue {
 public:
  enum class Op : std::uint8_t { kStart, kRead, kWrite, kWritesDone, kFinish };
  struct Tag {
    CallOnQueue* call;
    Op op;
  };
  virtual void on_completion(Op op, bool ok) = 0;
  /// Cancels the call (main thread).
  virtual void cancel() { context_.TryCancel(); }

 protected:
  explicit CallOnQueue(CallGroup& group) : calls_(group.queue()), group_(group) {}
  ~CallOnQueue() = default;
  /// Counted from its start to its end: the owner waits for them all.
  /// ended() is the call's last touch of its owner.
  void began() { calls_.call_began(group_); }
  void ended() { calls_.call_ended(group_); }
  CallQueue& calls_;
  grpc::ClientContext context_;

 private:
  CallGroup& group_;
};

/// A client bidi call to a game service. Writes are started from the main
/// thread, one in flight at a time. The call keeps itself (self_) until it
/// is over (its status taken) and no operation of it is in flight.
template <class Message>
class QueuedCall : public CallOnQueue, public PausedReads {
 public:
  explicit QueuedCall(CallGroup& group) : CallOnQueue(group) {}

  /// Cancels the call (main thread); a paused one takes its status now.
  void cancel() override {
    context_.TryCancel();
    std::lock_guard lock(mutex_);
    end_pause_locked();
  }

  /// The worker rings it feeds have room again (main thread).
  void resume() final {
    std::lock_guard lock(mutex_);
    if (!paused_) return;
    paused_ = false;
    reads_resumed_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    read_next_locked();
  }

  /// Half-closes after the queued writes (main thread).
  void close() {
    std::lock_guard lock(mutex_);
    closing_ = true;
    if (!writing_) writes_done_locked();
  }

  void on_completion(Op op, bool ok) final {
    switch (op) {
      case Op::kStart:
        on_started(ok);
        break;
      case Op::kRead:
        on_read_done(ok);
        break;
      case Op::kWrite:
        on_write_done(ok);
        break;
      case Op::kWritesDone:
      case Op::kFinish:
        break;
    }
    std::shared_ptr<QueuedCall> self;
    bool by_us = false;
    {
      std::lock_guard lock(mutex_);
      --outstanding_;
      if (op == Op::kFinish) finished_ = true;
      if (!finished_ || outstanding_ != 0) return;
      self = std::move(self_);
      by_us = writes_done_;
    }
    on_done(status_, by_us);
    ended();
    // `self` may be the last reference: it goes at the end of this scope.
  }

 protected:
  /// Starts the call prepared on context_ (`stream`); `self` keeps this
  /// alive until the call is over.
  void begin(std::shared_ptr<QueuedCall> self,
             std::unique_ptr<grpc::ClientAsyncReaderWriter<Message, Message>> stream) {
    began();
    std::lock_guard lock(mutex_);
    self_ = std::move(self);
    stream_ = std::move(stream);
    ++outstanding_;
    stream_->StartCall(&start_tag_);
  }
  /// False once the call is ending: nothing more may be queued.
  bool open_locked() const { return !closing_ && !over_; }
  /// Whether a write may start now: the call started and is not over, and
  /// none is in flight.
  bool can_write_locked() const { return started_ && !over_ && !writing_; }
  void write_locked(Message* message) {  // mutex_ held, can_write_locked()
    writing_ = true;
    ++outstanding_;
    stream_->Write(*message, &write_tag_);
  }

  /// A write completed (ok) or failed with the call: accounting, and on
  /// failure dropping what is queued. mutex_ held.
  virtual void wrote_locked(bool ok) = 0;
  /// Starts the next write if anything is queued; whether it did. mutex_ held.
  virtual bool write_next_locked() = 0;
  /// One message from the game (the gRPC thread).
  virtual void on_read(Message& in) = 0;
  /// Whether the worker rings this call feeds are backed up: then it does
  /// not read, and `call` is resumed once they are not
  /// (UpstreamEvents::hold_reads). mutex_ held.
  virtual bool backed_up_locked(const std::weak_ptr<PausedReads>& call) = 0;
  /// Since when the call has been reading (0: since it started), INT64_MAX
  /// while it is paused. Any thread.
  std::int64_t reads_resumed_ns() const noexcept {
    return reads_resumed_ns_.load(std::memory_order_relaxed);
  }
  /// The call is over; `closed_by_us`: we had half-closed it.
  virtual void on_done(const grpc::Status& status, bool closed_by_us) = 0;

  ~QueuedCall() = default;

  std::mutex mutex_;
  bool writing_ = false;  // guarded by mutex_

 private:
  void on_started(bool ok) {
    std::lock_guard lock(mutex_);
    if (!ok) {  // the call never started: only its status is left to take
      finish_locked();
      return;
    }
    started_ = true;
    read_next_locked();
    if (!write_next_locked() && closing_) writes_done_locked();  // queued before the start
  }

  void on_read_done(bool ok) {
    if (!ok) {  // the game ended the call (or it broke): take its status
      std::lock_guard lock(mutex_);
      finish_locked();
      return;
    }
    on_read(in_);
    in_.Clear();
    std::lock_guard lock(mutex_);
    read_next_locked();
  }

  /// Starts the next read, or pauses when the rings it feeds are backed up.
  void read_next_locked() {
    if (backed_up_locked(self_)) {
      paused_ = true;
      reads_resumed_ns_.store(std::numeric_limits<std::int64_t>::max(), std::memory_order_relaxed);
      return;
    }
    ++outstanding_;
    stream_->Read(&in_, &read_tag_);
  }

  /// A paused call that ends (cancelled, a write failed) has no read in
  /// flight to fail and take its status: it takes it itself.
  void end_pause_locked() {
    if (!paused_) return;
    paused_ = false;
    finish_locked();
  }

  void on_write_done(bool ok) {
    std::lock_guard lock(mutex_);
    writing_ = false;
    wrote_locked(ok);
    if (!ok) {  // the call broke; the read fails too and takes the status
      end_pause_locked();
      return;
    }
    if (!write_next_locked() && closing_) writes_done_locked();
  }

  /// The read side is over: nothing more is written, and the call's status
  /// comes with Finish. Once.
  void finish_locked() {
    if (over_) return;
    over_ = true;
    ++outstanding_;
    stream_->Finish(&status_, &finish_tag_);
  }

  void writes_done_locked() {                        // no write in flight
    if (writes_done_ || over_ || !started_) return;  // on_started() does it
    writes_done_ = true;
    ++outstanding_;
    stream_->WritesDone(&writes_done_tag_);
  }

  std::unique_ptr<grpc::ClientAsyncReaderWriter<Message, Message>> stream_;
  Tag start_tag_{this, Op::kStart};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag writes_done_tag_{this, Op::kWritesDone};
  Tag finish_tag_{this, Op::kFinish};
  Message in_;                        // owned by the read in flight
  grpc::Status status_;               // Finish's, once finished_
  std::shared_ptr<QueuedCall> self_;  // guarded by mutex_: until the call is over
  int outstanding_ = 0;               // guarded by mutex_: operations in flight
  bool started_ = false;              // guarded by mutex_: StartCall completed
  bool closing_ = false;              // guarded by mutex_: close() was called
  bool writes_done_ = false;          // guarded by mutex_
  bool over_ = false;                 // guarded by mutex_: the read side ended; Finish started
  bool finished_ = false;             // guarded by mutex_: Finish completed
  bool paused_ = false;               // guarded by mutex_: no read, waiting for resume()
  std::atomic<std::int64_t> reads_resumed_ns_{0};
};

}  // namespace gatehouse::bridge
