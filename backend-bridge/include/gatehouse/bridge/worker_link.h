// The bridge's side of the worker rings: reading client records from each
// worker (WorkerLink) and the one path game events take into them
// (WorkerRings), for both contracts.
//
//   worker i --ring w-br/i--> WorkerLink::read --handler(record, Origin)--> Bridge
//            (head committed up to the first record whose batched event the
//             game has not acknowledged: RecordKeeper)
//   worker i <--ring br-w/i-- WorkerRings <--message/kick/ended-- upstreams
//            (under the ring's producer mutex, from the gRPC thread or the
//             main thread; a full ring: the backlog, in order, retried by the
//             main thread each pass)
//
// Back-pressure (issue 20): a worker's backlog is bounded by
// game-backlog-bytes. Over it, the game calls that feed that worker start no
// new read (hold_reads(); a batched link feeds every worker, so it stops for
// any), and flush_backlogs() resumes them once the backlog is down to half
// of the bound. What was read is kept, nothing is dropped: the backlog holds
// at most the bound plus what each of those calls had read already (one gRPC
// message each), and the rest waits in the game's process.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gatehouse/bridge/upstream.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/contract/record_reader.h"
#include "gatehouse/shm/doorbell.h"
#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse::bridge {

/// A game event on its way to a session's worker.
struct Reply {
  enum Kind : std::uint8_t { kMessage, kKick, kEnded, kVerdict, kReplaced, kAuthVerdict } kind;
  std::uint64_t conn;
  std::uint64_t seq = 0;       ///< kMessage: a batched game's Event.seq
  std::int32_t grpc_code = 0;  ///< kEnded; kVerdict: 1 accepted, 0 refused
  /// kAuthVerdict: as ipc::AuthVerdict.
  std::int32_t user_id = 0;
  std::uint32_t refusal = 0;
  std::int32_t claimed_user_id = 0;
};

/// Both rings between the bridge and one worker.
class WorkerLink final : public RecordKeeper {
 public:
  static constexpr std::size_t kRingBatch = 256;

  /// The rings of bridge `bridge` with worker `worker`. `ack_timeout_ns`:
  /// how long a batched game may leave events unacknowledged before its link
  /// is given up.
  WorkerLink(GatewaySegment& segment, std::uint32_t worker, std::uint32_t bridge,
             shm::Doorbell doorbell, std::int64_t ack_timeout_ns, const Settings& settings);

  /// Hands up to kRingBatch records to `handler(parsed, origin)`, each
  /// decoded and checked as its type's ipc::Parsed<Header> (RecordReader;
  /// main thread, once per duty-cycle pass), then commits the ring's head as
  /// far as no record is kept. Returns the records read.
  template <class Handler>
  std::size_t read(Handler&& handler, std::uint64_t pass, std::int64_t now_ns) {
    pass_ = pass;
    now_ns_ = now_ns;
    const std::size_t n = from_worker_.poll(
        [&](const shm::Record& record) {
          records_.visit(record, [&](const auto& parsed) {
            const bool replay = record.end <= replay_until_;
            if (!replay) from_worker_.note_taken(record.end);  // before anything leaves
            handler(parsed, Origin{this, record.position, replay});
          });
          return true;
        },
        kRingBatch);
    release_acknowledged();
    return n;
  }

  void keep(std::uint64_t position, const std::shared_ptr<Acknowledger>& link,
            std::uint64_t index) override;
  /// Records are kept for a game's acknowledgement.
  bool holding() const noexcept { return !pending_.empty(); }
  /// See shm::RingConsumer.
  bool prepare_park() noexcept { return from_worker_.prepare_park(); }
  void unpark() noexcept { from_worker_.unpark(); }

 private:
  friend class WorkerRings;

  void release_acknowledged();

  shm::Doorbell doorbell_;
  const std::int64_t ack_timeout_ns_;
  const ipc::RecordReader<RingKind::kWorkerToBridge> records_;
  shm::RingConsumer from_worker_;
  // Records whose batched events the game has not acknowledged, in ring
  // order; the ring's head stays at the first. Events of one link from one
  // pass share an entry (released when its last is acknowledged).
  struct Pending {
    std::uint64_t position;  // the first record's start
    std::shared_ptr<Acknowledger> link;
    std::uint64_t last_index;  // on the link
    std::uint64_t pass;
    std::int64_t since_ns;
  };
  std::deque<Pending> pending_;
  // Records before this had been handled by a dead predecessor: gonet2 ones
  // went to their streams, batched ones are sent again (the game de-duplicates).
  const std::uint64_t replay_until_;
  std::uint64_t released_;  // the head as last committed
  std::uint64_t pass_ = 0;
  std::int64_t now_ns_ = 0;

  // To the worker: written from the gRPC thread and the main thread.
  std::mutex produce_mutex_;
  shm::RingProducer to_worker_;  // guarded by produce_mutex_
  struct Waiting {
    Reply reply;
    std::string bytes;
    std::shared_ptr<ReplySource> source;  // null: nobody to tell (kEnded)
  };
  /// What an event costs while it waits: its bytes and its place in the deque.
  static std::size_t cost(const Waiting& w) noexcept { return sizeof(Waiting) + w.bytes.size(); }
  std::deque<Waiting> backlog_;  // guarded by produce_mutex_: waiting for room, in order
  // The cost() of backlog_: written under produce_mutex_, read without it
  // as a hint (hold_reads() locks before it pauses anything).
  std::atomic<std::size_t> backlog_bytes_{0};
  // Calls that stopped reading for this backlog, resumed once it is down to
  // half the bound. Weak: a call that ends meanwhile is not kept.
  std::vector<std::weak_ptr<PausedReads>> paused_;  // guarded by produce_mutex_
};

/// The one path game events take into the worker rings, for every upstream.
class WorkerRings final : public UpstreamEvents {
 public:
  /// `workers` outlives this.
  WorkerRings(std::vector<std::unique_ptr<WorkerLink>>& workers, const Settings& settings,
              Wakeup& wakeup);

  void message(Unpublished& unpublished, std::uint64_t conn, std::uint64_t seq, std::string& bytes,
               ReplySource& from) override;
  void kick(Unpublished& unpublished, std::uint64_t conn, ReplySource& from) override;
  void ended(Unpublished& unpublished, std::uint64_t conn, std::int32_t grpc_code) override;
  void publish(const Unpublished& unpublished) override;
  /// The bridge's own news for a session's worker (main thread): the verdict
  /// on a login that waits for one, a session replaced by a newer login.
  void verdict(Unpublished& unpublished, std::uint64_t conn, bool accepted);
  void replaced(Unpublished& unpublished, std::uint64_t conn);
  /// The auth service's verdict on a login (any thread).
  void auth_verdict(Unpublished& unpublished, const ipc::AuthVerdict& verdict);
  bool hold_reads(std::uint64_t conn, const std::weak_ptr<PausedReads>& call) override;

  /// Main thread, once per pass: writes what waits for room, in order,
  /// publishes every ring, and resumes the calls paused for a backlog that
  /// is down to half the bound. Returns the events written.
  std::size_t flush_backlogs();
  /// As the last flush_backlogs() left them (main thread): bytes (cost) and
  /// events waiting, and calls paused, over every worker.
  std::size_t backlog_bytes() const noexcept { return backlog_bytes_total_; }
  std::size_t backlog_events() const noexcept { return backlog_events_total_; }
  std::size_t paused_calls() const noexcept { return paused_total_; }
  /// Pauses since the last call (any thread's), for the main thread's metrics.
  std::uint64_t take_pauses() noexcept { return pauses_.exchange(0, std::memory_order_relaxed); }
  /// Counts since the last call, for the main thread's metrics.
  std::uint64_t take_messages_received() noexcept {
    return received_.exchange(0, std::memory_order_relaxed);
  }
  std::uint64_t take_dropped() noexcept { return dropped_.exchange(0, std::memory_order_relaxed); }

 private:
  void deliver(Unpublished& unpublished, const Reply& reply, std::span<const std::byte> bytes,
               std::string* movable, ReplySource* from);
  /// One event as a record in its worker's ring (produce mutex held).
  static shm::WriteStatus write(WorkerLink& link, const Reply& reply,
                                std::span<const std::byte> bytes);
  /// Pauses `call` on `link` when its backlog is over the bound.
  bool hold_on(std::uint32_t w, const std::weak_ptr<PausedReads>& call);

  std::vector<std::unique_ptr<WorkerLink>>& workers_;
  const Settings settings_;
  Wakeup& wakeup_;
  std::atomic<std::uint64_t> received_{0};             // game messages, any contract
  std::atomic<std::uint64_t> dropped_{0};              // events for ids no session ever had
  std::vector<std::shared_ptr<ReplySource>> written_;  // main thread: flush_backlogs()'s
  const std::size_t bound_;                            // game-backlog-bytes
  std::atomic<std::uint64_t> pauses_{0};
  std::vector<std::weak_ptr<PausedReads>> resuming_;  // main thread: flush_backlogs()'s
  std::size_t backlog_bytes_total_ = 0;               // main thread
  std::size_t backlog_events_total_ = 0;              // main thread
  std::size_t paused_total_ = 0;                      // main thread
};

}  // namespace gatehouse::bridge
