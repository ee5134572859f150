#include "gatehouse/worker/worker.h"

#include <string.h>  // explicit_bzero

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string_view>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/base/log_text.h"
#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/contract/shm_checks.h"
#include "gatehouse/net/endpoint.h"
#include "gatehouse/shm/idle_strategy.h"

namespace gatehouse::worker {
namespace {

constexpr std::size_t kRingBatch = 256;

/// A batched game's message seq (epoch << 32 | n) the session has had: the
/// same epoch and not above the last one delivered. A new epoch (the game
/// restarted) starts afresh; 0 (gonet2 streams) is never a replay.
bool is_replayed(std::uint64_t seq, std::uint64_t last) {
  return seq != 0 && (seq >> 32) == (last >> 32) && seq <= last;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// "1.2.3.4:5678" or "[::1]:5678" for logs.
std::string remote_of(const Session& s) {
  return address_port_text(s.address, s.port);
}

/// A lane per peer (`role`: "frontend" or "bridge"), each with its doorbell.
template <class Lane>
std::vector<std::unique_ptr<Lane>> make_lanes(GatewaySegment& segment, std::uint32_t worker,
                                              const Settings& settings,
                                              std::vector<shm::Doorbell> doorbells,
                                              std::uint32_t peers, const char* role) {
  if (doorbells.size() != peers) {
    throw std::invalid_argument("a worker needs the doorbell of each of the " +
                                std::to_string(peers) + " " + role + "s");
  }
  std::vector<std::unique_ptr<Lane>> lanes;
  for (std::uint32_t p = 0; p < peers; ++p) {
    lanes.push_back(std::make_unique<Lane>(segment, worker, p, settings, std::move(doorbells[p])));
  }
  return lanes;
}

/// Reads `lanes` with one input budget (the journal's bound), the first to
/// be read taking turns (`first`); `on_record(lane, record)` as
/// RingConsumer::poll's handler. Returns the records read.
template <class Lane, class OnRecord>
std::size_t poll_lanes(std::vector<std::unique_ptr<Lane>>& lanes, std::size_t& first,
                       const OnRecord& on_record) {
  std::size_t work = 0;
  first = (first + 1) % lanes.size();
  for (std::size_t k = 0; k < lanes.size() && work < kRingBatch; ++k) {
    Lane& lane = *lanes[(first + k) % lanes.size()];
    work +=
        lane.in.poll([&](const shm::Record& r) { return on_record(lane, r); }, kRingBatch - work);
  }
  return work;
}

/// Notes `lanes`' input heads and output tails in the journal (commit_batch).
template <class Lane>
void note_positions(const std::vector<std::unique_ptr<Lane>>& lanes, std::uint64_t* in_heads,
                    std::uint64_t* out_tails) {
  for (std::size_t p = 0; p < lanes.size(); ++p) {
    in_heads[p] = lanes[p]->in.position();
    out_tails[p] = lanes[p]->out.position();
  }
}

}  // namespace

Worker::Worker(GatewaySegment& segment, std::uint32_t index, shm::Doorbell doorbell,
               std::vector<shm::Doorbell> frontend_doorbells,
               std::vector<shm::Doorbell> bridge_doorbells, std::unique_ptr<LoginProvider> login,
               modern::GatewayKeyring gateway_keys)
    : segment_(segment),
      settings_(segment.settings()),
      frames_limit_(RateLimit::per_minute(settings_.rpm_limit, settings_.rpm_burst)),
      bytes_limit_(RateLimit::per_minute(settings_.bpm_limit, settings_.bpm_burst)),
      index_(index),
      metrics_(segment.metrics().workers[index]),
      sessions_(segment.sessions()),
      journal_(recover(segment, index, sessions_)),
      doorbell_(std::move(doorbell)),
      login_(std::move(login)),
      gateway_keys_(std::move(gateway_keys)),
      login_failures_(settings_),
      frontends_(make_lanes<FrontendLane>(segment, index, settings_, std::move(frontend_doorbells),
                                          settings_.frontends, "frontend")),
      bridges_(make_lanes<BridgeLane>(segment, index, settings_, std::move(bridge_doorbells),
                                      settings_.bridges, "bridge")) {
  scratch_.reserve(protocol::kMaxPayload + 16);
  for (const std::string_view reason : kLoginRefusalNames) {
    login_refused_logs_.push_back(std::make_unique<LogLimit>(
        spdlog::level::info, "login refused refusal=" + std::string(reason)));
  }
  if (const char* fault = std::getenv("GATEHOUSE_FAULT_KILL_PER_MILLE")) {
    fault_per_mille_ = static_cast<std::uint32_t>(std::atoi(fault));
    spdlog::warn("fault injection on: SIGKILL in {} per mille of batches", fault_per_mille_);
  }
  segment_.control().workers[index].pid.store(::getpid());
  // This worker's range of the session table (worker_of_slot).
  const SlotRange range = slots_of_worker(index_, settings_);
  first_slot_ = range.first;
  drain_cursor_ = first_slot_;
  drain_end_ = range.end;
  cipher_checked_.assign(drain_end_ - first_slot_, 0);
}

Journal& Worker::recover(GatewaySegment& segment, std::uint32_t index,
                         shm::SessionTable<Session>& sessions) {
  Journal& j = segment.journal(index);
  const std::uint32_t images = j.count.load(std::memory_order_acquire);
  if (j.state.load(std::memory_order_acquire) == Journal::kCommitting) {
    // The batch was durable: finish storing its ring positions (checked
    // against the rings' other cursors when this worker attaches to them).
    const Settings settings = segment.settings();
    const auto roll_forward = [&](RingKind in, RingKind out, std::uint32_t peers,
                                  const std::uint64_t* in_heads, const std::uint64_t* out_tails) {
      for (std::uint32_t p = 0; p < peers; ++p) {
        segment.ring(out, index, p).descriptor().tail.store(out_tails[p]);
        segment.ring(in, index, p).descriptor().head.store(in_heads[p]);
      }
    };
    roll_forward(RingKind::kFrontendToWorker, RingKind::kWorkerToFrontend, settings.frontends,
                 j.frontend_in_head, j.frontend_out_tail);
    roll_forward(RingKind::kBridgeToWorker, RingKind::kWorkerToBridge, settings.bridges,
                 j.bridge_in_head, j.bridge_out_tail);
    spdlog::warn("recovered: rolled the last batch of a dead worker forward");
  } else if (images != 0) {
    // It was not: undo its session changes; its outputs were never published
    // and its inputs never committed, so it will run again.
    // journal() checked the count; it is read again here, so bounded again.
    // The images go back as they are; each is checked when next touched.
    for (std::uint32_t k = 0; k < images && k < kJournalEntries; ++k) {
      if (Session* s = sessions.find(shm::ConnectionId(j.entries[k].conn)))
        *s = j.entries[k].before;
    }
    spdlog::warn("recovered: rolled back {} session changes of a dead worker's last batch", images);
  }
  j.count.store(0, std::memory_order_relaxed);
  j.state.store(Journal::kIdle, std::memory_order_release);
  ++j.incarnations;
  return j;
}

Session* Worker::touch(shm::ConnectionId id) {
  Session* s = sessions_.find(id);
  if (s == nullptr) return s;
  // The one way to a session's fields: checked each time; its cipher once
  // per tenant (this worker writes it from then on).
  check_session(*s, id.value(), settings_);
  std::uint32_t& checked = cipher_checked_[id.slot() - first_slot_];
  if (checked != id.generation()) {
    check_session_cipher(*s, id.value());
    checked = id.generation();
  }
  if (s->journal_batch == journal_.batch) return s;
  const std::uint32_t k = journal_.count.load(std::memory_order_relaxed);
  if (k >= kJournalEntries) {
    spdlog::critical("journal full: a batch touched more than {} sessions", kJournalEntries);
    std::abort();  // a bug in the batch limits; the restart rolls the batch back
  }
  journal_.entries[k].conn = id.value();
  journal_.entries[k].before = *s;
  journal_.count.store(k + 1, std::memory_order_release);  // the image is whole before it counts
  s->journal_batch = journal_.batch;
  return s;
}

Session* Worker::live_session(shm::ConnectionId id) {
  Session* s = touch(id);
  if (s == nullptr || s->state == Session::kUnused || s->state == Session::kClosed) return nullptr;
  return s;
}

void Worker::maybe_die(int point) {
  static constexpr const char* kPoints[] = {"before the commit point", "after the commit point",
                                            "after publishing, before committing inputs"};
  // Successive incarnations die at successive points, so any three deaths
  // in a row cover all of them.
  if (fault_per_mille_ == 0 || !batch_had_work_ ||
      point != static_cast<int>(journal_.incarnations % 3)) {
    return;
  }
  static std::minstd_rand rng(static_cast<unsigned>(::getpid()));
  if (rng() % 1000 < fault_per_mille_) {
    spdlog::warn("fault injection: killing this worker {}", kPoints[point]);
    ::raise(SIGKILL);
  }
}

void Worker::begin_batch() {
  journal_.count.store(0, std::memory_order_relaxed);
  ++journal_.batch;
  batch_unix_ms_ = unix_ms();
}

/// The commit point, then the ring stores it stands for.
void Worker::commit_batch() {
  note_positions(frontends_, journal_.frontend_in_head, journal_.frontend_out_tail);
  note_positions(bridges_, journal_.bridge_in_head, journal_.bridge_out_tail);
  maybe_die(0);
  journal_.state.store(Journal::kCommitting, std::memory_order_release);
  maybe_die(1);
  for_each_lane([](auto& lane) { lane.out.publish(); });
  maybe_die(2);
  for_each_lane([](auto& lane) { lane.in.commit(); });
  journal_.count.store(0, std::memory_order_relaxed);
  journal_.state.store(Journal::kIdle, std::memory_order_release);
}

/// A record about `conn` writes at most one record to its frontend and one
/// to a bridge: it waits while its frontend's ring or a bridge ring it can
/// write to lacks the room, and only the sessions that need that ring wait
/// with it.
bool Worker::outputs_have_room(std::uint64_t conn) {
  const shm::ConnectionId id(conn);
  if (!to_frontend(id).can_write(ipc::kMaxRecordBytes)) return false;
  // A peek, as close_matching's: the state and the user id only pick rings.
  const Session* peek = sessions_.find(id);
  if (peek == nullptr || peek->state == Session::kUnused || peek->state == Session::kClosed) {
    return true;  // not open (a kConnOpened opens it afresh): nothing for a bridge
  }
  if (peek->state == Session::kLoggedIn || peek->state == Session::kLoginPending) {
    // Its game stream's bridge is the only one it can write to.
    return to_bridge(peek->user_id).can_write(ipc::kMaxRecordBytes);
  }
  // Before that, a login can ask its slot's bridge for a verdict or open a
  // stream on its user's, which only the decrypted login (or the verdict)
  // names: every bridge's ring.
  return std::all_of(bridges_.begin(), bridges_.end(),
                     [](const auto& lane) { return lane->out.can_write(ipc::kMaxRecordBytes); });
}

shm::RingProducer& Worker::to_frontend(shm::ConnectionId id) {
  return frontends_[frontend_of_slot(id.slot(), settings_)]->out;
}

shm::RingProducer& Worker::to_bridge(std::int64_t user_id) {
  return bridges_[bridge_of_user(user_id, settings_)]->out;
}

template <class AnyLane>
bool Worker::on_record(const AnyLane& lane, const shm::Record& record) {
  return lane.records.visit(record, [this](const auto& r) {
    if (!outputs_have_room(r.header.conn)) return false;
    on(r);
    return true;
  });
}

// ------------------------------------------------------------------ frontend records

void Worker::on(const ipc::Parsed<ipc::ConnOpened>& r) {
  open_session(r.header);
}

void Worker::on(const ipc::Parsed<ipc::ClientFrame>& r) {
  const shm::ConnectionId id(r.header.conn);
  if (Session* s = live_session(id)) {
    handle_frame(id, *s, r.tail);
  } else {
    metrics_.add(metrics::kDroppedToGame);  // in flight when we kicked the session
  }
}

void Worker::on(const ipc::Parsed<ipc::ConnClosed>& r) {
  const shm::ConnectionId id(r.header.conn);
  if (Session* s = live_session(id)) {
    finish(id, *s, static_cast<CloseReason>(r.header.reason));  // a CloseReason: checked
  } else if (sessions_.find(id) != nullptr) {
    // Closed already (our kick crossed it) or never opened (a frontend
    // died before publishing the open): every kConnClosed gets its
    // kClose, the frontend ignores one for a slot it already released.
    ipc::write_record(to_frontend(id), ipc::kClose,
                      ipc::CloseCommand{id.value(), r.header.reason, 0});
  }
}

void Worker::open_session(const ipc::ConnOpened& opened) {
  const shm::ConnectionId id(opened.conn);
  Session* s = touch(id);
  if (s == nullptr) return;  // the frontend released it already (cannot happen: it waits for us)
  const std::uint64_t journal_batch = s->journal_batch;
  *s = Session{};
  s->journal_batch = journal_batch;
  s->state = Session::kOpen;
  s->opened_unix_ms = opened.accepted_unix_ms;
  s->frames_tat_ns = opened.accepted_unix_ms * 1'000'000;
  s->bytes_tat_ns = s->frames_tat_ns;
  std::memcpy(s->address, opened.address, sizeof s->address);
  s->port = opened.port;
  s->listener = opened.listener;
  if (logs_connection(id)) spdlog::info("open conn={:#x} remote={}", id.value(), remote_of(*s));
  if (draining_) finish(id, *s, CloseReason::kShutdown);
}

void Worker::handle_frame(shm::ConnectionId id, Session& s, std::span<const std::byte> payload) {
  const std::int64_t started = monotonic_ns();
  const metrics::Timed timed = dispatch_frame(id, s, payload);
  if (timed != metrics::kTimedCount) {
    metrics_.observe(timed, static_cast<std::uint64_t>(monotonic_ns() - started));
  }
}

metrics::Timed Worker::kick(shm::ConnectionId id, Session& s, CloseReason reason) {
  finish(id, s, reason);
  return metrics::kTimedCount;
}

/// Handles one client frame; returns what it was, for the duration metric
/// (kTimedCount when it ended the session).
metrics::Timed Worker::dispatch_frame(shm::ConnectionId id, Session& s,
                                      std::span<const std::byte> payload) {
  std::span<const std::byte> clear = payload;
  switch (s.crypto) {
    case Session::kClear:
      break;
    case Session::kLegacy:
      scratch_.resize(payload.size());
      s.cipher.legacy.decrypt.apply(payload.data(), scratch_.data(), payload.size());
      clear = scratch_;
      break;
    case Session::kModern:
      scratch_.resize(payload.size() - std::min(payload.size(), modern::kTagBytes));
      if (!s.cipher.modern.open.open(payload.data(), payload.size(), scratch_.data())) {
        return kick(id, s, CloseReason::kDecryptFailed);
      }
      clear = scratch_;
      break;
  }
  ++s.frames_in;
  const auto packet = protocol::parse_client_payload(clear);
  if (!packet) return kick(id, s, CloseReason::kBadBody);
  if (packet->seq != s.rx_seq + 1) {
    spdlog::debug("conn {:#x}: seq {} where {} was due", id.value(), packet->seq, s.rx_seq + 1);
    return kick(id, s, CloseReason::kBadSeq);
  }
  s.rx_seq = packet->seq;

  // Token buckets, not a wall-clock minute: no burst of rpm-limit frames at
  // the start of every minute. The batch's clock is fine enough for them.
  const std::int64_t now_ns = batch_unix_ms_ * 1'000'000;
  if (!frames_limit_.admit(s.frames_tat_ns, now_ns)) {
    return kick(id, s, CloseReason::kRpmExceeded);
  }
  if (!bytes_limit_.admit(s.bytes_tat_ns, now_ns, payload.size())) {
    return kick(id, s, CloseReason::kBpmExceeded);
  }

  const std::int16_t proto = packet->proto;
  if (s.crypto == Session::kClear && !allows(s, kCryptoClear) && proto != protocol::kGetSeedReq &&
      proto != protocol::kKeyExchangeReq && proto != protocol::kKeyExchange2Req) {
    spdlog::debug("conn {:#x}: proto {} in clear where the listener requires encryption",
                  id.value(), proto);
    return kick(id, s, CloseReason::kCryptoRefused);
  }
  if (proto > protocol::kMaxGatewayProto) {
    if (s.state != Session::kLoggedIn) return kick(id, s, CloseReason::kNotLoggedIn);
    const auto message = clear.subspan(4);  // | proto | body |, without seq
    if (message.size() > kMaxForwardBytes) {
      // Its echo or broadcast could not reach a modern-crypto receiver: the
      // message is refused here, at its sender (not kicked: a gonet2 client
      // sending up to 65531 bytes broke no rule of its own protocol).
      metrics_.add(metrics::kClientMessagesTooLarge);
      client_too_large_log_.log(
          "conn {:#x} user {}: a {}-byte message (proto {}) is over the {} bytes every receiver "
          "can take; not forwarded",
          id.value(), s.user_id, message.size(), proto, kMaxForwardBytes);
      return metrics::kForward;
    }
    const ipc::StreamMessage header{id.value(), s.user_id, packet->seq};
    ipc::write_record(to_bridge(s.user_id), ipc::kStreamMessage, header, message);
    return metrics::kForward;
  }
  switch (proto) {
    case protocol::kHeartBeatReq: {
      const auto beat = protocol::parse_heartbeat(packet->body);
      if (!beat) return kick(id, s, CloseReason::kBadBody);
      send_packet(id, s, protocol::kHeartBeatAck, *beat);
      return metrics::kHeartbeat;
    }
    case protocol::kUserLoginReq:
      handle_login(id, s, packet->body);
      return metrics::kLogin;
    case protocol::kGetSeedReq:
      handle_seed(id, s, packet->body);
      return metrics::kGetSeed;
    case protocol::kKeyExchangeReq:
      handle_key_exchange(id, s, packet->body);
      return metrics::kKeyExchange;
    case protocol::kKeyExchange2Req:
      handle_key_exchange2(id, s, packet->body);
      return metrics::kKeyExchange2;
    default:
      spdlog::debug("conn {:#x}: unknown gateway proto {}", id.value(), proto);
      return kick(id, s, CloseReason::kUnknownProto);
  }
}

void Worker::handle_login(shm::ConnectionId id, Session& s, std::span<const std::byte> body) {
  const auto login = protocol::parse_login(body);
  if (!login) return finish(id, s, CloseReason::kBadBody);
  const LoginVerdict verdict = check_login(s, *login);
  if (verdict.deferred) {
    // To the auth service, through the bridge of the slot (the user is not
    // known yet); the verdict comes back as a kAuthVerdict (on(AuthVerdict)).
    // The body is what the client sent, decrypted: the bridge builds the
    // service's request from it.
    ipc::AuthRequest request{id.value(), {}, s.port, 0, 0};
    std::memcpy(request.address, s.address, sizeof request.address);
    ipc::write_record(bridges_[bridge_of_slot(id.slot(), settings_)]->out, ipc::kAuthRequest,
                      request, body);
    s.state = Session::kAuthPending;
    return;
  }
  conclude_login(id, s, verdict, login->open_udid);
}

void Worker::conclude_login(shm::ConnectionId id, Session& s, const LoginVerdict& verdict,
                            std::string_view open_udid) {
  if (verdict.uid == 0) {
    metrics_.refused(verdict.refusal);
    login_refused_logs_[static_cast<std::size_t>(verdict.refusal)]->log(
        "login refused conn={:#x} remote={} refusal={} user={} open_udid '{}'", id.value(),
        remote_of(s), to_string(verdict.refusal), verdict.claimed_uid, log_text(open_udid));
    send_packet(id, s, protocol::kUserLoginFaildAck, 0);
    return finish(id, s, CloseReason::kLoginFailed);
  }
  s.user_id = verdict.uid;
  // Later logins get larger numbers; two workers never the same one.
  last_login_seq_ = std::max<std::uint64_t>(
      last_login_seq_ + kMaxWorkers,
      static_cast<std::uint64_t>(batch_unix_ms_) * 1000 * kMaxWorkers + index_);
  s.login_seq = last_login_seq_;
  // Whether this user is logged in already is the bridge's to say: it sees
  // every worker's logins (duplicate-login).
  const std::uint32_t flags = ipc::stream_open_flags(settings_.duplicate_login);
  ipc::write_record(to_bridge(s.user_id), ipc::kStreamOpen,
                    ipc::StreamOpen{id.value(), s.user_id, s.login_seq, flags, 0});
  if (flags == ipc::kAwaitVerdict) {
    s.state = Session::kLoginPending;  // logged in, or refused, by the bridge's verdict
    return;
  }
  complete_login(id, s);
}

/// The session is logged in: the frontend lifts its login deadline, the
/// client gets its ack.
void Worker::complete_login(shm::ConnectionId id, Session& s) {
  s.state = Session::kLoggedIn;
  metrics_.add(metrics::kLoginsOk);
  metrics_.add(metrics::kSessionsLoggedIn, 1);
  // Before the ack: the frontend lifts the login deadline and the pre-login
  // budget before the client can know it logged in.
  ipc::write_record(to_frontend(id), ipc::kLoggedIn, ipc::LoggedIn{id.value()});
  send_packet(id, s, protocol::kUserLoginSucceedAck, static_cast<std::int32_t>(s.user_id));
  if (!logs_connection(id)) return;
  spdlog::info("login conn={:#x} remote={} user={} crypto={}{}", id.value(), remote_of(s),
               s.user_id, crypto_modes_text(mode_of(s.crypto)),
               s.crypto == Session::kModern
                   ? "/" + std::string(modern::name_of(s.cipher.modern.seal.aead))
                   : std::string());
}

LoginVerdict Worker::check_login(const Session& s, const protocol::LoginRequest& login) {
  if (s.state != Session::kOpen) return LoginVerdict::refused(LoginRefusal::kAlreadyLoggedIn);
  const std::int64_t now_ns = monotonic_ns();
  // A blocked address's login is not even checked: what it sends costs no
  // signature check and teaches it nothing.
  if (login_failures_.address_blocked(s.address, now_ns)) {
    return LoginVerdict::refused(LoginRefusal::kAddressBackoff);
  }
  return limited(s, login_->authenticate(login, batch_unix_ms_ / 1000));
}

LoginVerdict Worker::limited(const Session& s, LoginVerdict verdict) {
  if (verdict.deferred) return verdict;  // judged when the auth service's verdict comes
  const std::int64_t now_ns = monotonic_ns();
  if (verdict.uid == 0) {
    if (is_failed_login(verdict.refusal)) {
      login_failures_.failed(s.address, verdict.counts_against_user ? verdict.claimed_uid : 0,
                             now_ns);
    }
  } else if (login_failures_.user_blocked(verdict.uid, now_ns)) {
    // A good credential too: while the user's bucket is empty, a guess at
    // its credential cannot tell a right guess from a wrong one.
    verdict = LoginVerdict::refused(LoginRefusal::kUserBackoff, verdict.uid);
  }
  return verdict;
}

bool Worker::allows(const Session& s, CryptoModes mode) const {
  const std::uint8_t modes = s.listener < settings_.listener_count
                                 ? settings_.listener_crypto[s.listener]
                                 : std::uint8_t{kCryptoAny};
  return (modes & mode) != 0;
}

void Worker::handle_seed(shm::ConnectionId id, Session& s, std::span<const std::byte> body) {
  if (!allows(s, kCryptoLegacy)) return finish(id, s, CloseReason::kCryptoRefused);
  const auto seeds = protocol::parse_seed(body);
  // A second exchange would re-key mid-stream; gonet2 clients never do it.
  if (!seeds || s.crypto != Session::kClear) return finish(id, s, CloseReason::kBadBody);
  const std::uint64_t x1 = legacy::dh_random_secret();
  const std::uint64_t x2 = legacy::dh_random_secret();
  const protocol::SeedPair reply{static_cast<std::int32_t>(legacy::dh_public(x1)),
                                 static_cast<std::int32_t>(legacy::dh_public(x2))};
  reply_.clear();
  protocol::encode_seed_packet(protocol::kGetSeedAck, reply, reply_);
  send_to_client(id, s, reply_);  // in clear: encryption starts after it
  s.cipher.legacy.decrypt.init(legacy::dh_power(seeds->send_seed, x1));
  s.cipher.legacy.encrypt.init(legacy::dh_power(seeds->receive_seed, x2));
  s.crypto = Session::kLegacy;
}

void Worker::handle_key_exchange(shm::ConnectionId id, Session& s,
                                 std::span<const std::byte> body) {
  if (!allows(s, kCryptoModern1)) {
    key_refused_log_.log(
        "conn {:#x}: key_exchange_req (the modern exchange's version 1, which does not "
        "authenticate the gateway) on a listener without modern1; kicked (crypto_refused)",
        id.value());
    return finish(id, s, CloseReason::kCryptoRefused);
  }
  const auto request = protocol::parse_key_exchange_req(body);
  if (!request || s.crypto != Session::kClear) return finish(id, s, CloseReason::kBadBody);
  const auto handshake = modern::gateway_handshake(request->key, request->aead);
  if (!handshake) {
    spdlog::debug("conn {:#x}: key_exchange_req with an unusable public key", id.value());
    return finish(id, s, CloseReason::kBadBody);
  }
  reply_.clear();
  ByteWriter(reply_).i16(protocol::kKeyExchangeAck);
  protocol::encode_key_exchange(handshake->gateway_public,
                                static_cast<std::uint8_t>(handshake->aead), reply_);
  send_to_client(id, s, reply_);  // in clear: encryption starts after it
  start_modern(s, handshake->keys, handshake->aead);
  metrics_.add(metrics::kKeyExchangesV1);
}

void Worker::handle_key_exchange2(shm::ConnectionId id, Session& s,
                                  std::span<const std::byte> body) {
  if (!allows(s, kCryptoModern)) return finish(id, s, CloseReason::kCryptoRefused);
  const auto request = protocol::parse_key_exchange2_req(body);
  if (!request || s.crypto != Session::kClear) return finish(id, s, CloseReason::kBadBody);
  // Never a fallback to an unauthenticated exchange: no key, no session.
  const modern::KeyPair* key = gateway_keys_.find(request->key_id);
  if (key == nullptr) {
    key_refused_log_.log(
        "conn {:#x}: key_exchange2_req names gateway key id {}, which this "
        "gateway does not hold ({} loaded); kicked (unknown_gateway_key)",
        id.value(), modern::to_hex(request->key_id), gateway_keys_.size());
    return finish(id, s, CloseReason::kUnknownGatewayKey);
  }
  const auto reply = modern::gateway_reply(*key, request->key, request->aead);
  if (!reply) {
    spdlog::debug("conn {:#x}: key_exchange2_req with an unusable public key", id.value());
    return finish(id, s, CloseReason::kBadBody);
  }
  reply_.clear();
  ByteWriter(reply_).i16(protocol::kKeyExchange2Ack);
  protocol::encode_key_exchange2_ack(
      {reply->gateway_ephemeral, static_cast<std::uint8_t>(reply->aead), reply->confirm}, reply_);
  send_to_client(id, s, reply_);  // in clear: encryption starts after it
  start_modern(s, reply->keys, reply->aead);
  metrics_.add(metrics::kKeyExchangesV2);
}

void Worker::start_modern(Session& s, const modern::SessionKeys& keys, modern::Aead aead) {
  s.cipher.modern.open.init(keys.to_gateway, aead);
  s.cipher.modern.seal.init(keys.to_client, aead);
  s.crypto = Session::kModern;
}

void Worker::send_packet(shm::ConnectionId id, Session& s, std::int16_t proto, std::int32_t value) {
  reply_.clear();
  protocol::encode_int32_packet(proto, value, reply_);
  send_to_client(id, s, reply_);
}

void Worker::send_to_client(shm::ConnectionId id, Session& s, std::span<const std::byte> payload) {
  const ipc::SendHeader header{id.value()};
  const std::size_t wire_bytes = payload.size() + overhead(s);
  shm::WriteStatus status;
  const auto out =
      to_frontend(id).claim(ipc::kSend, sizeof header + protocol::kSizeBytes + wire_bytes, &status);
  if (status != shm::WriteStatus::kOk) {
    // outputs_have_room() is checked before every input record, so this is a
    // broken invariant, not load.
    spdlog::critical("conn {:#x}: no room in the frontend ring after the check", id.value());
    std::abort();
  }
  std::memcpy(out.data(), &header, sizeof header);
  std::byte* frame = out.data() + sizeof header;
  store_u16(frame, static_cast<std::uint16_t>(wire_bytes));
  switch (s.crypto) {
    case Session::kClear:
      std::memcpy(frame + protocol::kSizeBytes, payload.data(), payload.size());
      break;
    case Session::kLegacy:
      s.cipher.legacy.encrypt.apply(payload.data(), frame + protocol::kSizeBytes, payload.size());
      break;
    case Session::kModern:
      s.cipher.modern.seal.seal(payload.data(), payload.size(), frame + protocol::kSizeBytes);
      break;
  }
  to_frontend(id).commit(out.size());
  ++s.frames_out;
}

bool Worker::logs_connection(shm::ConnectionId id) const {
  const std::uint32_t n = settings_.log_connections;
  if (n == kLogConnectionsAll) return true;
  if (n == kLogConnectionsNone) return false;
  // By the connection id, mixed (slots and generations count up), so a
  // sampled session has all of its lines.
  return ((id.value() * 0x9E37'79B9'7F4A'7C15ull) >> 32) % n == 0;
}

void Worker::finish(shm::ConnectionId id, Session& s, CloseReason reason) {
  if (s.state == Session::kLoggedIn || s.state == Session::kLoginPending) {
    // (A pending login's verdict may be on its way: the bridge forgets it.)
    ipc::write_record(to_bridge(s.user_id), ipc::kStreamClose,
                      ipc::StreamClose{id.value(), s.user_id});
  }
  if (s.state == Session::kLoggedIn) metrics_.add(metrics::kSessionsLoggedIn, -1);
  metrics_.closed(reason);
  const std::int64_t lived_ms = unix_ms() - s.opened_unix_ms;
  if (!logs_connection(id)) {
    // left out by log-connections; metrics_.closed() above counted it
  } else if (reason == CloseReason::kClientClosed || reason == CloseReason::kShutdown) {
    spdlog::info("close conn={:#x} remote={} user={} reason={} frames_in={} frames_out={} ms={}",
                 id.value(), remote_of(s), s.user_id, to_string(reason), s.frames_in, s.frames_out,
                 lived_ms);
  } else {
    spdlog::warn("kick conn={:#x} remote={} user={} reason={} frames_in={} frames_out={} ms={}",
                 id.value(), remote_of(s), s.user_id, to_string(reason), s.frames_in, s.frames_out,
                 lived_ms);
  }
  s.state = Session::kClosed;
  // Nothing is sent to it any more: its keys go now, not when the slot is
  // reused (the segment outlives the process and can be read by root).
  explicit_bzero(&s.cipher, sizeof s.cipher);
  ipc::write_record(to_frontend(id), ipc::kClose,
                    ipc::CloseCommand{id.value(), static_cast<std::uint32_t>(reason), 0});
}

// ------------------------------------------------------------------ bridge records

void Worker::on(const ipc::Parsed<ipc::GameMessage>& r) {
  const shm::ConnectionId id(r.header.conn);
  Session* s = live_session(id);
  if (s == nullptr) {
    metrics_.add(metrics::kDroppedToClient);
    spdlog::debug("conn {:#x}: game message of {} bytes after the session closed", id.value(),
                  r.tail.size());
    return;
  }
  if (r.tail.size() < protocol::kServerHeaderBytes) {
    unframeable_log_.log("conn {:#x}: game sent a {}-byte message that cannot be framed",
                         id.value(), r.tail.size());
    return finish(id, *s, CloseReason::kFrameTooLarge);
  }
  if (is_replayed(r.header.seq, s->game_seq_in)) {
    metrics_.add(metrics::kGameDuplicatesDropped);
    spdlog::debug("conn {:#x}: game message {:#x} was delivered already", id.value(), r.header.seq);
    return;
  }
  if (r.header.seq != 0) s->game_seq_in = r.header.seq;
  if (r.tail.size() > protocol::kMaxPayload - overhead(*s)) {
    // Too large for this receiver's frame (its crypto included): dropped
    // for it alone; the receiver did nothing wrong, so it is not kicked.
    metrics_.add(metrics::kGameMessagesTooLarge);
    game_too_large_log_.log(
        "conn {:#x} user {}: game message of {} bytes does not fit its frame ({} bytes at "
        "most); dropped for it",
        id.value(), s->user_id, r.tail.size(), protocol::kMaxPayload - overhead(*s));
    return;
  }
  send_to_client(id, *s, r.tail);
}

void Worker::on(const ipc::Parsed<ipc::GameKick>& r) {
  const shm::ConnectionId id(r.header.conn);
  if (Session* s = live_session(id)) finish(id, *s, CloseReason::kKickedByGame);
}

/// The bridge's verdict on a login that waited for one (duplicate-login =
/// refuse).
void Worker::on(const ipc::Parsed<ipc::LoginVerdict>& r) {
  const shm::ConnectionId id(r.header.conn);
  Session* s = live_session(id);
  if (s == nullptr || s->state != Session::kLoginPending) return;  // it left meanwhile
  if (r.header.accepted != 0) return complete_login(id, *s);
  metrics_.refused(LoginRefusal::kDuplicateLogin);
  s->state = Session::kOpen;  // it never had a stream
  send_packet(id, *s, protocol::kUserLoginFaildAck, 0);
  finish(id, *s, CloseReason::kDuplicateLogin);
}

/// The auth service's verdict on a login (login = auth:), or the bridge's
/// when it could not get one (auth_timeout, auth_busy, auth_unavailable).
void Worker::on(const ipc::Parsed<ipc::AuthVerdict>& r) {
  const shm::ConnectionId id(r.header.conn);
  Session* s = live_session(id);
  if (s == nullptr || s->state != Session::kAuthPending) return;  // it left meanwhile
  s->state = Session::kOpen;
  // The service is trusted: a user it names as the credential's owner is
  // authentic, so the failure counts against it (a guessed password).
  const LoginVerdict verdict =
      r.header.user_id > 0
          ? LoginVerdict::ok(r.header.user_id)
          : LoginVerdict::refused(static_cast<LoginRefusal>(r.header.refusal),
                                  r.header.claimed_user_id, r.header.claimed_user_id > 0);
  conclude_login(id, *s, limited(*s, verdict), {});
}

/// The user logged in again (duplicate-login = replace): this session goes,
/// after what is queued for it.
void Worker::on(const ipc::Parsed<ipc::Replaced>& r) {
  const shm::ConnectionId id(r.header.conn);
  if (Session* s = live_session(id)) finish(id, *s, CloseReason::kReplaced);
}

void Worker::on(const ipc::Parsed<ipc::StreamEnded>& r) {
  const shm::ConnectionId id(r.header.conn);
  if (Session* s = live_session(id)) {
    finish(id, *s,
           r.header.grpc_code == 0 ? CloseReason::kKickedByGame : CloseReason::kBackendUnavailable);
  }
}

// ------------------------------------------------------------------ loop

template <class Match, class Close>
bool Worker::close_matching(std::uint32_t& cursor, std::size_t budget, const Match& match,
                            const Close& close) {
  for (; cursor < drain_end_ && budget > 0; ++cursor) {
    const shm::ConnectionId id = sessions_.live_id(cursor);
    if (!id) continue;
    const Session* peek = sessions_.find(id);
    if (peek == nullptr || peek->state == Session::kUnused || peek->state == Session::kClosed ||
        !match(id, *peek)) {
      continue;
    }
    if (!outputs_have_room(id.value())) return false;  // next pass, after this batch is published
    close(id, *live_session(id));
    --budget;
  }
  return cursor >= drain_end_;
}

bool Worker::drain_some(CloseReason reason, std::size_t budget) {
  return close_matching(
      drain_cursor_, budget, [](shm::ConnectionId, const Session&) { return true; },
      [&](shm::ConnectionId id, Session& s) { finish(id, s, reason); });
}

std::size_t Worker::take_kick() {
  // A user has a session or two: a small budget keeps the batch's journal
  // (inputs, the drain and this) within kJournalEntries.
  constexpr std::size_t kKickBatch = 64;
  const KickRequest& k = segment_.control().kicks[index_];
  const std::uint64_t posted = k.posted.load(std::memory_order_acquire);
  if (posted == k.done.load(std::memory_order_relaxed)) return 0;
  if (posted != kick_request_) {  // a new request: its scan starts over
    kick_request_ = posted;
    kick_cursor_ = first_slot_;
    kicked_ = 0;
  }
  const std::string_view reason(k.reason, std::min<std::size_t>(k.reason_bytes, kKickReasonBytes));
  const auto named = [&k](shm::ConnectionId id, const Session& s) {
    if (k.conn != 0) return id.value() == k.conn;
    return s.user_id == k.user_id &&
           (s.state == Session::kLoggedIn || s.state == Session::kLoginPending);
  };
  kick_over_ =
      close_matching(kick_cursor_, kKickBatch, named, [&](shm::ConnectionId id, Session& s) {
        reply_.clear();
        protocol::encode_client_error_packet({protocol::kErrorKicked, reason}, reply_);
        send_to_client(id, s, reply_);
        finish(id, s, CloseReason::kKickedByAdmin);
        ++kicked_;
      });
  return 1;
}

void Worker::report_kick() {
  KickRequest& k = segment_.control().kicks[index_];
  k.kicked.store(kicked_, std::memory_order_relaxed);
  k.done.store(kick_request_, std::memory_order_release);
  kick_over_ = false;
}

std::size_t Worker::do_work() {
  const auto on_lane_record = [this](const auto& lane, const shm::Record& r) {
    return on_record(lane, r);
  };
  // One batch: inputs read, sessions changed (journaled), outputs written,
  // then all of it made durable at once by commit_batch(). The frontends
  // share one input budget, the bridges another.
  begin_batch();
  std::size_t work = poll_lanes(frontends_, first_frontend_, on_lane_record);
  work += poll_lanes(bridges_, first_bridge_, on_lane_record);
  if (!draining_ && segment_.closing_sessions()) {
    draining_ = true;
    spdlog::info("draining: closing every session (reason shutdown)");
  }
  if (draining_ && !drained_) {
    drained_ = drain_some(CloseReason::kShutdown, kRingBatch);
    ++work;
  }
  work += take_kick();
  batch_had_work_ = work != 0;
  commit_batch();
  if (kick_over_) report_kick();

  const std::int64_t now = monotonic_ns();
  segment_.control().workers[index_].heartbeat_ns.store(now, std::memory_order_relaxed);
  for_each_lane([now](auto& lane) { lane.in.heartbeat(now); });
  flush_log_limits(now);
  return work;
}

int Worker::run() {
  shm::BackoffIdler idler =
      shm::BackoffIdler::duty_cycle(std::chrono::microseconds(settings_.idle_spin_us));
  while (stop_requested_ == 0) {
    idler.idle(do_work(), [this](std::chrono::nanoseconds timeout) {
      // Parked only if no input arrived meanwhile (each ring's producer
      // rings the doorbell once it sees its consumer parked). A lane whose
      // prepare_park() failed, or that was not asked, has its flag down
      // already: unpark() leaves it so.
      bool parked = true;
      for_each_lane([&parked](auto& lane) { parked = parked && lane.in.prepare_park(); });
      if (parked) doorbell_.wait(timeout);
      for_each_lane([](auto& lane) { lane.in.unpark(); });
    });
  }
  return 0;
}

}  // namespace gatehouse::worker
