// Bridge: holds the gRPC channels to the game services and, per game
// service, either one bidi Stream per logged-in session (the gonet2 contract,
// proto/game.proto) or one batched link for all of them (proto/batch.proto,
// `--backend batch:HOST:PORT`), and moves records between the workers' rings
// and those streams.
//
// Threads: the main thread runs the duty cycle (worker rings -> streams,
// events -> worker rings). gRPC's callback threads run the stream reactors.
// A gonet2 stream's reactor posts events (a frame from the game, a kick, the
// end of a stream) to a mutex-protected queue and rings the bridge's own
// doorbell if the main thread is parked; a batched link's reactor writes its
// messages and kicks straight into the worker rings (under the ring's
// producer mutex), which saves a wakeup of the main thread per reply.
//
// Per session, gonet2: kStreamOpen opens a stream with metadata userid; each
// kStreamMessage becomes one Frame{Message}; kStreamClose half-closes it
// (WritesDone) so the game sees end of stream. From the game: Message ->
// kGameMessage, Kick -> kGameKick, end of stream (clean or failed, including
// a game service that is down) -> kStreamEnded, which makes the worker kick
// the session (kicked_by_game / backend_unavailable).
// Batched: kStreamOpen / kStreamMessage / kStreamClose become OPEN / MESSAGE
// / CLOSE events on the link, all of one duty-cycle pass in one gRPC write;
// MESSAGE / KICK events from the game become kGameMessage / kGameKick. A
// link that breaks is re-opened with backoff and re-announces (OPEN) every
// session it carried: sessions wait for their game service, they are not
// kicked. Nothing on a link is lost to a bridge crash (proto/batch.proto):
// the records behind the events the game has not acknowledged stay in the
// worker rings (the ring head is committed only up to the first of them) and
// a new bridge sends them again; the game acknowledges and re-sends its own
// side likewise, and the workers drop what they delivered already.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/shm/doorbell.h"

namespace gatehouse::bridge {

class Bridge {
 public:
  Bridge(GatewaySegment& segment, shm::Doorbell doorbell,
         std::vector<shm::Doorbell> worker_doorbells);
  ~Bridge();

  /// Runs until request_stop() and every stream has ended (or the drain
  /// timeout passed); returns the process exit code.
  int run();
  /// Async-signal-safe: half-close every stream, then exit.
  void request_stop() noexcept { stop_requested_ = 1; }

  class BatchLink;

  /// What a stream reactor reports to the main thread.
  struct Event {
    enum Kind : std::uint8_t { kMessage, kKick, kEnded, kLinkDown } kind;
    std::uint64_t conn;          ///< kLinkDown: the backend index
    std::int32_t grpc_code = 0;  ///< kEnded, kLinkDown
    bool closed_by_us = false;   ///< kEnded: we half-closed it first
    std::string bytes;           ///< kMessage: | proto | body |
    std::uint64_t lost = 0;      ///< kLinkDown: events the game had not acknowledged
    std::uint64_t seq = 0;       ///< kMessage from a batched link: the game's Event.seq
    /// Set while an event of a batched link waits in a backlog: the link does
    /// not acknowledge it to the game until it is in a ring.
    std::shared_ptr<BatchLink> link = nullptr;
  };
  /// Called from the gRPC thread.
  void post(Event event);
  /// A call to a game service on the bridge's completion queue (bridge.cc):
  /// what its tags stand for, handed back by the gRPC thread.
  class CallOnQueue {
   public:
    enum class Op : std::uint8_t { kStart, kRead, kWrite, kWritesDone, kFinish };
    struct Tag {
      CallOnQueue* call;
      Op op;
    };
    virtual void on_completion(Op op, bool ok) = 0;
    /// Cancels the call (main thread).
    void cancel() { context_.TryCancel(); }

   protected:
    explicit CallOnQueue(Bridge& bridge) : bridge_(bridge) {}
    ~CallOnQueue() = default;
    /// Counted from its start to its end: the bridge waits for them all.
    void began() { bridge_.call_began(); }
    void ended() { bridge_.call_ended(); }
    Bridge& bridge_;
    grpc::ClientContext context_;
  };

 private:
  class GameStream;
  struct WorkerLink;
  struct Backend;  // a channel, its stubs, and its batched link if it speaks that contract

  /// Called from the gRPC thread: one Batch from a batched game service.
  template <class Batch>
  void post_batch(BatchLink& from, Batch& batch);

  /// Where a batched event came from in a worker ring: the record stays there
  /// until the game acknowledges the event.
  struct Origin {
    WorkerLink* worker;
    std::uint64_t position;
  };
  std::size_t read_worker(WorkerLink& worker);
  void release_acknowledged(WorkerLink& worker);
  bool on_worker_record(WorkerLink& worker, const shm::Record& record);
  /// The session's game service: its index, and the backend (null: none).
  std::uint32_t backend_index(std::int64_t user_id) const;  // backends_ not empty
  Backend* backend_of(std::int64_t user_id) const;
  /// Queues one event on `backend`'s link; false when it is down.
  bool send_batched(Backend& backend, const Origin* origin, int kind, std::uint64_t conn,
                    std::span<const std::byte> message, std::int64_t user_id = 0,
                    std::uint64_t seq = 0);
  /// Opens the session's game stream, or attaches it to its backend's batched
  /// link. False when it has one already (or there is no backend).
  bool open_stream(std::uint64_t conn, std::int64_t user_id, const Origin* origin = nullptr);
  void start_link(std::uint32_t backend);
  void relink_due_backends();
  void give_up_sessions(std::uint32_t backend);
  std::int64_t backend_wait_ns() const noexcept;
  /// How long a batched game service may leave events unacknowledged.
  std::int64_t ack_timeout_ns() const noexcept;
  void take_over();
  void retry_due_streams();
  std::size_t deliver_events();
  /// One event as a record in its worker's ring (produce_mutex held);
  /// `bytes`: a kMessage's | proto | body |, wherever it is.
  shm::WriteStatus write_event(WorkerLink& link, const Event& e, std::span<const std::byte> bytes);
  void flush_links();
  void close_all_streams();
  std::size_t links_up() const;
  void park(std::chrono::nanoseconds timeout);

  GatewaySegment& segment_;
  const Settings settings_;
  metrics::Writer metrics_;               // main thread only
  std::atomic<std::int64_t>& in_flight_;  // in the segment; any thread
  shm::Doorbell doorbell_;
  std::vector<std::unique_ptr<WorkerLink>> workers_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::uint64_t pass_ = 0;    // duty-cycle passes, for coalescing pending records
  std::int64_t pass_ns_ = 0;  // when this pass began
  std::unordered_map<std::uint64_t, std::shared_ptr<GameStream>> streams_;  // main thread only
  struct BatchedSession {
    std::uint32_t backend;
    std::int64_t user_id;
  };
  std::unordered_map<std::uint64_t, BatchedSession> batched_;  // main thread only
  // Streams re-opened after a bridge restart are retried with backoff while
  // the game service is down, instead of kicking their sessions.
  struct Retry {
    std::int64_t user_id;
    std::int64_t due_ns;
    std::int64_t give_up_ns;
    std::uint32_t backoff_ms;
  };
  std::unordered_map<std::uint64_t, std::int64_t> reopening_;  // conn -> user, until it works
  std::unordered_map<std::uint64_t, Retry> retries_;

  std::mutex events_mutex_;
  std::vector<Event> events_;                        // guarded by events_mutex_
  std::vector<Event> taken_;                         // main thread's copy
  std::vector<std::shared_ptr<BatchLink>> written_;  // main thread: backlogged events written
  std::atomic<bool> parked_{false};
  std::atomic<std::uint64_t> direct_received_{0};  // batched messages the gRPC thread delivered
  std::atomic<std::uint64_t> direct_batches_{0};   // batches the gRPC thread read
  std::atomic<std::uint64_t> direct_dropped_{0};   // events for ids no session ever had
  volatile std::sig_atomic_t stop_requested_ = 0;

  // The game calls' completion queue and the thread that polls it.
  void call_began();
  void call_ended();
  grpc::CompletionQueue queue_;
  std::thread grpc_thread_;
  std::mutex calls_mutex_;
  std::condition_variable calls_over_;
  std::size_t calls_live_ = 0;  // guarded by calls_mutex_: started, not over
};

}  // namespace gatehouse::bridge
