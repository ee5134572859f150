// Worker: the per-session logic of the gonet2 agent, for the sessions whose
// connection slot maps to this worker (worker_of_slot(slot) == index: one
// contiguous range of the session table per worker, so its sessions share
// memory pages only with each other).
//
// A duty cycle over a pair of rings with each frontend (frontend -> worker,
// worker -> frontend) and with each bridge (bridge -> worker, worker ->
// bridge). Before taking an input record it makes sure the output rings the
// record can write to have room for the largest output it can produce, so it
// never has to drop or block mid-record; when they do not, it leaves the
// input where it is (backpressure). Outputs are published once per pass.
//
// For each client frame: decrypt (once a key exchange is done: legacy RC4 or
// modern ChaCha20-Poly1305), check the seq, count it against the per-minute
// limit, enforce what the listener allows (crypto_refused), then heartbeat
// (0 -> 1), login (10 -> 11 / 12), legacy key exchange (30 -> 31), modern
// key exchange version 1 (32 -> 33, only where a listener allows modern1) or
// version 2 (34 -> 35, with the gateway's static keys), or forward (> 1000)
// to the game.
// Any bad input kicks the session with a reason; nothing else is affected.
#pragma once

#include <csignal>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "gatehouse/base/log_limit.h"
#include "gatehouse/base/rate_limit.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/contract/close_reason.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/journal.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/contract/record_reader.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/contract/session.h"
#include "gatehouse/crypto/gateway_key_file.h"
#include "gatehouse/shm/doorbell.h"
#include "gatehouse/shm/session_table.h"
#include "gatehouse/worker/login.h"
#include "gatehouse/worker/login_failures.h"

namespace gatehouse::worker {

class Worker {
 public:
  /// `frontend_doorbells`: one per frontend, in order; `bridge_doorbells`:
  /// one per bridge, in order.
  Worker(GatewaySegment& segment, std::uint32_t index, shm::Doorbell doorbell,
         std::vector<shm::Doorbell> frontend_doorbells, std::vector<shm::Doorbell> bridge_doorbells,
         std::unique_ptr<LoginProvider> login, modern::GatewayKeyring gateway_keys = {});

  /// Runs do_work() until request_stop(), idling (spin, yield, park on the
  /// doorbell) while there is nothing to do; returns the process exit code.
  int run();
  /// One pass of the duty cycle: a batch of input from every ring handled
  /// and made durable (docs/crash-consistency.md), the drain advanced, the
  /// heartbeat written. Returns the work done (0: nothing to do). What run()
  /// repeats; a test drives the worker one pass at a time with it.
  std::size_t do_work();
  /// Async-signal-safe.
  void request_stop() noexcept { stop_requested_ = 1; }

 private:
  /// This worker's rings with one peer: a frontend (fe-w, w-fe) or a bridge
  /// (br-w, w-br).
  template <RingKind In, RingKind Out>
  struct Lane {
    Lane(GatewaySegment& segment, std::uint32_t worker, std::uint32_t peer,
         const Settings& settings, shm::Doorbell peer_doorbell)
        : doorbell(std::move(peer_doorbell)),
          records(worker, settings, peer),
          in(segment.ring(In, worker, peer)),
          out(segment.ring(Out, worker, peer), &doorbell) {}
    shm::Doorbell doorbell;  // the peer's: `out` rings it
    ipc::RecordReader<In> records;
    shm::RingConsumer in;
    shm::RingProducer out;
  };
  using FrontendLane = Lane<RingKind::kFrontendToWorker, RingKind::kWorkerToFrontend>;
  using BridgeLane = Lane<RingKind::kBridgeToWorker, RingKind::kWorkerToBridge>;
  /// `f(lane)` for every lane, the frontends' then the bridges'.
  template <class F>
  void for_each_lane(const F& f) {
    for (auto& lane : frontends_) f(*lane);
    for (auto& lane : bridges_) f(*lane);
  }

  bool outputs_have_room(std::uint64_t conn);
  /// The ring to the frontend that holds `id`'s connection.
  shm::RingProducer& to_frontend(shm::ConnectionId id);
  /// The ring to the bridge of `user_id`'s game streams (bridge_of_user).
  shm::RingProducer& to_bridge(std::int64_t user_id);
  /// An input record of `lane`, handled if the outputs it can write to have
  /// room; false (left in the ring) otherwise.
  template <class AnyLane>
  bool on_record(const AnyLane& lane, const shm::Record& record);
  // One per record type, decoded and checked by the ring's RecordReader.
  void on(const ipc::Parsed<ipc::ConnOpened>& r);
  void on(const ipc::Parsed<ipc::ClientFrame>& r);
  void on(const ipc::Parsed<ipc::ConnClosed>& r);
  void on(const ipc::Parsed<ipc::GameMessage>& r);
  void on(const ipc::Parsed<ipc::GameKick>& r);
  void on(const ipc::Parsed<ipc::StreamEnded>& r);
  void on(const ipc::Parsed<ipc::LoginVerdict>& r);
  void on(const ipc::Parsed<ipc::Replaced>& r);
  void on(const ipc::Parsed<ipc::AuthVerdict>& r);
  void open_session(const ipc::ConnOpened& opened);
  void handle_frame(shm::ConnectionId id, Session& s, std::span<const std::byte> payload);
  metrics::Timed dispatch_frame(shm::ConnectionId id, Session& s,
                                std::span<const std::byte> payload);
  void handle_login(shm::ConnectionId id, Session& s, std::span<const std::byte> body);
  /// Acts on the login's verdict: refuses, or opens the game stream (and
  /// logs in now, or once the bridge's LoginVerdict says so).
  void conclude_login(shm::ConnectionId id, Session& s, const LoginVerdict& verdict,
                      std::string_view open_udid);
  void complete_login(shm::ConnectionId id, Session& s);
  /// The login's verdict, with the failed-login limits applied (and the
  /// failure counted); deferred when the auth service decides.
  LoginVerdict check_login(const Session& s, const protocol::LoginRequest& login);
  /// `verdict` as the failed-login limits leave it: a failure counted, or a
  /// good credential refused while its user is in backoff.
  LoginVerdict limited(const Session& s, LoginVerdict verdict);
  void handle_seed(shm::ConnectionId id, Session& s, std::span<const std::byte> body);
  void handle_key_exchange(shm::ConnectionId id, Session& s, std::span<const std::byte> body);
  void handle_key_exchange2(shm::ConnectionId id, Session& s, std::span<const std::byte> body);
  /// Starts sealing and opening the session's payloads (after the ack).
  static void start_modern(
      Session& s, const modern::SessionKeys& keys,
      modern::Aead aead);  /// The session's listener lets its clients speak `mode`.
  bool allows(const Session& s, CryptoModes mode) const;
  /// Bytes encryption adds to a gateway -> client payload of the session.
  static std::size_t overhead(const Session& s) noexcept {
    return s.crypto == Session::kModern ? modern::kTagBytes : 0;
  }
  /// The largest `| proto | body |` forwarded to the game: what the session
  /// with the largest crypto overhead (modern, a 16-byte tag:
  /// docs/protocol-modern.md) can take in one frame, so that a game that
  /// broadcasts a client's message can deliver it to every receiver.
  static constexpr std::size_t kMaxForwardBytes = protocol::kMaxPayload - modern::kTagBytes;
  /// Frames, encrypts if the session is encrypted, and queues to the client.
  void send_to_client(shm::ConnectionId id, Session& s, std::span<const std::byte> payload);
  void send_packet(shm::ConnectionId id, Session& s, std::int16_t proto, std::int32_t value);
  /// Whether log-connections has this session's open/login/close lines written.
  bool logs_connection(shm::ConnectionId id) const;
  /// Ends the session: closes its game stream, logs, and tells the frontend.
  void finish(shm::ConnectionId id, Session& s, CloseReason reason);
  /// finish() for bad input inside dispatch_frame().
  metrics::Timed kick(shm::ConnectionId id, Session& s, CloseReason reason);
  /// Ends, with `close(id, session)`, the open sessions of this worker's
  /// range that `match(id, session)` selects, from `cursor` on: at most
  /// `budget` of them, none while the outputs lack room. True when the
  /// scan is over.
  template <class Match, class Close>
  bool close_matching(std::uint32_t& cursor, std::size_t budget, const Match& match,
                      const Close& close);
  /// Closes up to `budget` of this worker's sessions with `reason`, from
  /// drain_cursor_ on; true when none is left.
  bool drain_some(CloseReason reason, std::size_t budget);
  /// An operator's kick (ControlBlock::kicks) for this worker: its sessions
  /// closed in this batch, kicked_by_admin, each told the reason first.
  std::size_t take_kick();
  /// After the batch's commit: tells the supervisor the kick is done.
  void report_kick();
  /// The session of `id` if it is open, journaled for this batch.
  Session* live_session(shm::ConnectionId id);
  /// The session of `id` in any state, journaled for this batch.
  Session* touch(shm::ConnectionId id);
  void begin_batch();
  void commit_batch();
  /// Test hook (GATEHOUSE_FAULT_KILL_PER_MILLE): SIGKILLs this process at
  /// crash point `point` (0: before the commit point, 1: after it, 2: after
  /// publishing, before committing inputs) of a batch with that probability,
  /// to prove recovery at each. Never set in production.
  void maybe_die(int point);
  /// Rolls the previous incarnation's last batch back or forward (before any
  /// ring is attached); returns the journal.
  static Journal& recover(GatewaySegment& segment, std::uint32_t index,
                          shm::SessionTable<Session>& sessions);

  GatewaySegment& segment_;
  const Settings settings_;
  const RateLimit frames_limit_;  // rpm-limit / rpm-burst
  const RateLimit bytes_limit_;   // bpm-limit / bpm-burst
  const std::uint32_t index_;
  metrics::Writer metrics_;
  shm::SessionTable<Session> sessions_;
  Journal& journal_;  // recovered before the rings below are attached
  shm::Doorbell doorbell_;
  std::unique_ptr<LoginProvider> login_;
  const modern::GatewayKeyring gateway_keys_;  // gateway-key files, read at start
  LoginFailures login_failures_;               // after settings_, which it is made from
  // The rings: a lane per frontend and per bridge.
  std::vector<std::unique_ptr<FrontendLane>> frontends_;  // by frontend index
  std::vector<std::unique_ptr<BridgeLane>> bridges_;      // by bridge index
  std::size_t first_frontend_ = 0;                        // the frontend read first this batch
  std::size_t first_bridge_ = 0;                          // the bridge read first this batch

  std::vector<std::byte> scratch_;  // a decrypted client payload
  std::vector<std::byte> reply_;    // a reply being encoded
  // Lines a client can cause at will: at most one a second each.
  // One per refusal reason: a flood of one kind hides no other kind.
  std::vector<std::unique_ptr<LogLimit>> login_refused_logs_;
  LogLimit unframeable_log_{spdlog::level::warn, "game message that cannot be framed"};
  LogLimit client_too_large_log_{spdlog::level::warn, "client message over what receivers take"};
  LogLimit game_too_large_log_{spdlog::level::warn, "game message over a receiver's frame"};
  LogLimit key_refused_log_{spdlog::level::info, "modern key exchange refused"};
  volatile std::sig_atomic_t stop_requested_ = 0;
  bool drained_ = false;          // every session closed for the drain
  bool draining_ = false;         // the drain has begun
  std::uint32_t first_slot_ = 0;  // of this worker's range of the session table
  // Per slot of the range: the generation whose cipher states this worker
  // has checked (0: none; a generation is never 0).
  std::vector<std::uint32_t> cipher_checked_;
  std::uint32_t drain_cursor_ = 0;
  std::uint32_t drain_end_ = 0;
  // The operator's kick being carried out (KickRequest::posted; 0: none).
  std::uint64_t kick_request_ = 0;
  std::uint32_t kick_cursor_ = 0;
  std::uint32_t kicked_ = 0;
  bool kick_over_ = false;  // every session of it is closed: report after the commit
  std::uint32_t fault_per_mille_ = 0;
  bool batch_had_work_ = false;
  std::int64_t batch_unix_ms_ = 0;  // wall clock at the start of the batch
  std::uint64_t last_login_seq_ = 0;
};

}  // namespace gatehouse::worker
