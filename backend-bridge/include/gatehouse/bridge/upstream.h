// The seam between the bridge and a game service: one Upstream per instance
// (a --backend entry, or one found through etcd: game_services.h), an
// implementation per game-service contract (chosen when the instance comes),
// and the events they report back.
//
//   worker rings --records--> Bridge --open/send/close--> Upstream ==gRPC==> game
//   worker rings <--records-- UpstreamEvents <--message/kick/ended-- Upstream <==
//
//   Gonet2Upstream (gonet2_upstream.h): one Stream per session, proto/game.proto,
//       on the main thread's own HTTP/2 client (grpc_h2.h)
//   BatchUpstream  (batch_upstream.h):  one link for every session, proto/batch.proto,
//       on gRPC's (call_on_queue.h)
//
// Threads: the bridge's main thread calls an Upstream (every member). The
// game's messages reach UpstreamEvents as soon as they are read, without a
// hand-off to another thread: a gonet2 upstream reads them in flush() on the
// main thread; a batched link's gRPC thread (call_on_queue.h) reports them
// itself. What needs the main thread from the gRPC thread (a call that
// ended: kick, retry or re-link) the upstream keeps for its next flush() and
// says so through Wakeup.
#pragma once

#include <array>
#include <atomic>
#include <bitset>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/shm/doorbell.h"

namespace gatehouse::bridge {

/// Whoever answers for game events that wait in the bridge (a worker ring
/// was full) instead of being in a ring: a gonet2 stream counts them in the
/// in-flight metric (a dead bridge's successor reports them lost), a batched
/// link does not acknowledge them to the game until they are written.
class ReplySource {
 public:
  /// One event started waiting (any thread; the ring's producer mutex held).
  virtual void held() = 0;
  /// One event that waited is in its ring, published (main thread).
  virtual void released() = 0;
  /// A reference that keeps this alive while its events wait.
  virtual std::shared_ptr<ReplySource> keep() = 0;

 protected:
  ~ReplySource() = default;
};

/// A game call whose reads feed the worker rings, as the back-pressure sees
/// it (issue 20): while a worker's backlog is over game-backlog-bytes, the
/// calls that feed it start no new read (gRPC flow control then holds the
/// game's writes back in the game's process), and they are resumed by the
/// main thread once that backlog is below half of it.
class PausedReads {
 public:
  /// Main thread: the backlog drained; read again, or wait on another.
  virtual void resume() = 0;

 protected:
  ~PausedReads() = default;
};

/// Where upstreams deliver what their game services send back, in order per
/// session: into the session's worker ring (WorkerRings, worker_link.h, the
/// one path for both contracts), or behind what waits for room there. Any
/// thread; `unpublished` is the caller's own: publish() makes what it wrote
/// visible, one store per ring, so a gRPC message's events share it.
class UpstreamEvents {
 public:
  /// The worker rings a caller wrote into and has not published yet.
  using Unpublished = std::bitset<kMaxWorkers>;

  /// A message for the session's client (`bytes`: | proto | body |; moved
  /// from when it has to wait). `seq`: a batched game's Event.seq, or 0.
  virtual void message(Unpublished& unpublished, std::uint64_t conn, std::uint64_t seq,
                       std::string& bytes, ReplySource& from) = 0;
  /// The game ends the session (kicked_by_game).
  virtual void kick(Unpublished& unpublished, std::uint64_t conn, ReplySource& from) = 0;
  /// The session's game stream is over, or its game service unavailable
  /// (`grpc_code`): the worker kicks the session.
  virtual void ended(Unpublished& unpublished, std::uint64_t conn, std::int32_t grpc_code) = 0;
  virtual void publish(const Unpublished& unpublished) = 0;

  /// hold_reads() for a call that feeds every worker ring (a batched link).
  static constexpr std::uint64_t kEveryWorker = ~std::uint64_t{0};
  /// Back-pressure, before a call starts its next read (the gRPC thread, or
  /// the main thread resuming it): true when the backlog of `conn`'s worker
  /// (kEveryWorker: of any worker) is over game-backlog-bytes. Then the call
  /// must not read; it is kept (weakly: its end is not delayed) and resumed
  /// once that backlog has drained to half of the bound.
  virtual bool hold_reads(std::uint64_t conn, const std::weak_ptr<PausedReads>& call) = 0;

 protected:
  ~UpstreamEvents() = default;
};

/// Wakes the bridge's main thread out of park() when an upstream has news for
/// its next flush() (any thread). A Dekker pair with begin_park(): either the
/// notifier sees the main thread parked and rings, or the main thread sees
/// the news and does not sleep.
class Wakeup {
 public:
  explicit Wakeup(const shm::Doorbell& doorbell) : doorbell_(doorbell) {}
  void notify() noexcept {
    news_.store(true, std::memory_order_seq_cst);
    if (parked_.load(std::memory_order_seq_cst)) doorbell_.ring();
  }
  /// Main thread, before it sleeps: false when there was news since the last
  /// call (then it must not sleep). end_park() after, either way.
  bool begin_park() noexcept {
    parked_.store(true, std::memory_order_seq_cst);
    return !news_.exchange(false, std::memory_order_seq_cst);
  }
  void end_park() noexcept { parked_.store(false, std::memory_order_relaxed); }

 private:
  const shm::Doorbell& doorbell_;
  std::atomic<bool> news_{false};
  std::atomic<bool> parked_{false};
};

/// A batched link, as a worker ring sees it: the records behind its events
/// stay in the ring until it has acknowledged them.
class Acknowledger {
 public:
  /// Event `index` (on the link) is acknowledged, or never will be (the link
  /// ended: whatever it had not acknowledged is counted as dropped).
  virtual bool releases(std::uint64_t index) const = 0;
  /// The game held events too long: cancels the link; true the first time.
  virtual bool abandon() = 0;
  /// Since when the bridge has been reading the link (its acks reach us
  /// only then): the ack timeout counts from there, not from while the
  /// bridge itself held the link's reads back. INT64_MAX while it does.
  virtual std::int64_t reading_since_ns() const = 0;
  /// The game service's address, for messages.
  virtual std::string address() const = 0;

 protected:
  ~Acknowledger() = default;
};

/// Keeps worker-ring records until an Acknowledger releases them
/// (WorkerLink, main thread).
class RecordKeeper {
 public:
  /// Keeps the records from `position` on until `link` releases `index`.
  virtual void keep(std::uint64_t position, const std::shared_ptr<Acknowledger>& link,
                    std::uint64_t index) = 0;

 protected:
  ~RecordKeeper() = default;
};

/// The worker-ring record behind a call to an Upstream.
struct Origin {
  RecordKeeper* keeper = nullptr;
  std::uint64_t position = 0;  ///< where the record starts in its ring
  /// A dead predecessor had handled it: a batched link sends its event again
  /// (the game drops what it had), a gonet2 stream does not (its stream got
  /// it or died with the bridge).
  bool replay = false;
};

/// What an upstream counts: the bridge's counters (its shard), and the
/// same traffic and errors for its instance alone (the routing table's
/// InstanceRow::counts, copied there by GameServices).
class InstanceMetrics {
 public:
  using Counts = std::array<std::uint64_t, metrics::kInstanceCounterCount>;

  explicit InstanceMetrics(metrics::Writer& bridge) noexcept : bridge_(bridge) {}
  InstanceMetrics(const InstanceMetrics&) = delete;
  InstanceMetrics& operator=(const InstanceMetrics&) = delete;

  /// The main thread (the bridge's shard has one writer).
  void add(metrics::Counter counter, std::uint64_t n = 1) noexcept {
    bridge_.add(counter, n);
    switch (counter) {
      case metrics::kGameMessagesSent:
        bump(metrics::kInstanceMessagesSent, n);
        break;
      case metrics::kDroppedToGame:
        bump(metrics::kInstanceMessagesDropped, n);
        break;
      case metrics::kGameStreamsFailed:
        bump(metrics::kInstanceStreamsFailed, n);
        break;
      default:
        break;
    }
  }
  /// A message read from the instance (the gRPC thread; the bridge counts
  /// its own when the message is in its worker ring).
  void received() noexcept { bump(metrics::kInstanceMessagesReceived, 1); }
  /// Any thread.
  Counts counts() const noexcept {
    Counts out{};
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = counts_[i].load(std::memory_order_relaxed);
    return out;
  }

 private:
  void bump(metrics::InstanceCounter counter, std::uint64_t n) noexcept {
    counts_[counter].fetch_add(n, std::memory_order_relaxed);
  }

  metrics::Writer& bridge_;
  std::array<std::atomic<std::uint64_t>, metrics::kInstanceCounterCount> counts_{};
};

/// One game service behind its contract. Main thread only.
class Upstream {
 public:
  virtual ~Upstream() = default;

  /// The session starts talking to this game service: kStreamOpen (`origin`
  /// its record), or a take-over after a bridge restart (`origin` null: the
  /// session was logged in already). False when nothing was opened (it has
  /// its stream already, or a replayed record needs none).
  /// `login_seq`: Session::login_seq, for the game service (a later login
  /// of the same user has a larger one).
  virtual bool open(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                    const Origin* origin) = 0;
  /// One client message (kStreamMessage; `seq` the client's packet seq).
  virtual void send(std::uint64_t conn, std::uint64_t seq, std::span<const std::byte> message,
                    const Origin& origin) = 0;
  /// The client left or was kicked (kStreamClose): half-close its stream.
  virtual void close(std::uint64_t conn, const Origin& origin) = 0;
  /// Once per duty-cycle pass: handles calls that ended (reported to
  /// UpstreamEvents), starts the writes queued since the last pass, retries
  /// and re-links what is due. Returns how much it did.
  virtual std::size_t flush(std::int64_t now_ns) = 0;

  /// Whether the session has a game stream up, or one still ending (after
  /// close(), until the game has seen its end).
  virtual bool has_call(std::uint64_t conn) const = 0;
  /// Cancels the session's stream (it did not end in time after close()).
  virtual void cancel(std::uint64_t conn) = 0;

  /// The drain: half-closes every call; nothing is re-opened after this.
  virtual void close_all() = 0;
  /// Cancels every call (the drain timed out); their ends still come.
  virtual void cancel_all() = 0;
  /// gRPC calls up (streams, links); the drain is over when none is.
  virtual std::size_t calls_open() const = 0;
  /// No call of it is left on the CallQueue, not even one whose end the
  /// main thread has yet to see: nothing reaches it any more.
  virtual bool calls_over() const = 0;
  /// Events sent and not acknowledged by the game (0 for gonet2: no acks).
  virtual std::uint64_t unacknowledged() const = 0;
  /// Whether the game service can be reached now (ControlBlock::
  /// game_service_up, /ready): each contract says what that means. May ask
  /// gRPC to connect an idle channel; called a few times a second.
  virtual bool reachable() = 0;
  /// The instance moved to `address` (HOST:PORT; etcd says so): calls from
  /// now on go there. What is up on the old address stays while it works
  /// (a gonet2 stream); a batched link is made again there, its sessions
  /// re-announced.
  virtual void move_to(const std::string& address) = 0;
};

}  // namespace gatehouse::bridge
