// The worker driven one duty-cycle pass at a time (Worker::do_work) on a real
// gateway segment: the test plays the frontend and the bridge at the other
// ends of the worker's rings, as docs/architecture.md draws them.
#include "gatehouse/worker/worker.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/worker/login.h"

namespace gatehouse::worker {
namespace {

Settings test_settings() {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = 1;
  s.max_connections = 8;
  s.max_frame = 65535;
  s.read_timeout_ms = 15000;
  s.rpm_limit = 200;
  s.rpm_burst = 5;
  s.bpm_limit = 600'000;  // 10 kB/s
  s.bpm_burst = 1000;
  s.txqueuelen = 128;
  s.ring_bytes = 1 << 20;  // room for the largest record a frame can make
  s.log_level = 6;         // off
  s.login_mode = LoginMode::kAcceptAny;
  s.backend_count = 1;
  s.listener_count = 1;
  s.listener_crypto[0] = kCryptoAny;
  return s;
}

std::vector<shm::Doorbell> doorbells(std::size_t n) {
  std::vector<shm::Doorbell> bells;
  for (std::size_t i = 0; i < n; ++i) bells.push_back(shm::Doorbell::create());
  return bells;
}

/// The test's ends of worker 0's rings of `kind`, one per peer.
template <class End>
std::vector<End> ring_ends(const GatewaySegment& segment, RingKind kind, std::uint32_t peers) {
  std::vector<End> ends;
  for (std::uint32_t p = 0; p < peers; ++p) ends.emplace_back(segment.ring(kind, 0, p));
  return ends;
}

/// A record the worker wrote, copied out of its ring.
struct Written {
  std::uint32_t type;
  std::vector<std::byte> payload;
};

/// The records of one type, their fixed headers.
template <class Header>
std::vector<Header> headers_of(const std::vector<Written>& written, std::uint32_t type) {
  std::vector<Header> headers;
  for (const Written& w : written) {
    if (w.type == type) headers.push_back(ipc::parse_record<Header>(w.payload)->header);
  }
  return headers;
}

class WorkerStep : public ::testing::Test {
 protected:
  explicit WorkerStep(const Settings& settings = test_settings())
      : settings_(settings),
        segment_(GatewaySegment::create(
            "gatehouse-test-worker-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name(),
            settings)),
        to_workers_(ring_ends<shm::RingProducer>(segment_, RingKind::kFrontendToWorker,
                                                 settings.frontends)),
        from_workers_(ring_ends<shm::RingConsumer>(segment_, RingKind::kWorkerToFrontend,
                                                   settings.frontends)),
        to_bridges_(
            ring_ends<shm::RingConsumer>(segment_, RingKind::kWorkerToBridge, settings.bridges)),
        from_bridges_(
            ring_ends<shm::RingProducer>(segment_, RingKind::kBridgeToWorker, settings.bridges)),
        worker_(make_worker()) {}

  /// A worker 0 on the segment (recovering what the last one left).
  Worker make_worker() {
    return Worker(segment_, 0, shm::Doorbell::create(), doorbells(settings_.frontends),
                  doorbells(settings_.bridges), make_login_provider(settings_));
  }

  /// Opens a connection as frontend `frontend` does: a slot of its range,
  /// then kConnOpened.
  shm::ConnectionId open_connection(std::uint32_t frontend = 0) {
    shm::SlotTable slots = segment_.session_slots();
    slots.set_partitions(partitions_of(settings_));
    const auto id = slots.allocate(partition_of(0, frontend, settings_));
    EXPECT_TRUE(id.has_value());
    ipc::ConnOpened opened{};
    opened.conn = id->value();
    opened.address[15] = 1;
    opened.port = 40000;
    EXPECT_EQ(ipc::write_record(to_worker(*id), ipc::kConnOpened, opened), shm::WriteStatus::kOk);
    to_worker(*id).publish();
    return *id;
  }

  /// The ring from the frontend of `id`'s connection.
  shm::RingProducer& to_worker(shm::ConnectionId id) {
    return to_workers_[frontend_of_slot(id.slot(), settings_)];
  }

  /// One client frame `| seq | proto | body |`, in clear, as received.
  void client_frame(shm::ConnectionId id, std::uint32_t frame_no, std::uint32_t seq,
                    std::int16_t proto, std::vector<std::byte> body = {}) {
    std::vector<std::byte> payload(protocol::kClientHeaderBytes);
    const std::uint8_t header[] = {
        static_cast<std::uint8_t>(seq >> 24),  static_cast<std::uint8_t>(seq >> 16),
        static_cast<std::uint8_t>(seq >> 8),   static_cast<std::uint8_t>(seq),
        static_cast<std::uint8_t>(proto >> 8), static_cast<std::uint8_t>(proto)};
    std::memcpy(payload.data(), header, sizeof header);
    payload.insert(payload.end(), body.begin(), body.end());
    const ipc::ClientFrame frame{id.value(), frame_no, 0};
    EXPECT_EQ(ipc::write_record(to_worker(id), ipc::kClientFrame, frame, payload),
              shm::WriteStatus::kOk);
    to_worker(id).publish();
  }

  /// Everything the worker has published to frontend `frontend` so far.
  std::vector<Written> to_frontend(std::uint32_t frontend = 0) {
    return read_all(from_workers_[frontend]);
  }

  /// Everything the worker has published to bridge `bridge` so far.
  std::vector<Written> bridge_records(std::uint32_t bridge = 0) {
    return read_all(to_bridges_[bridge]);
  }

  static std::vector<Written> read_all(shm::RingConsumer& ring) {
    std::vector<Written> out;
    ring.read(
        [&](const shm::Record& r) {
          out.push_back({r.type, {r.payload.begin(), r.payload.end()}});
          return true;
        },
        1000);
    return out;
  }

  const Settings settings_;
  GatewaySegment segment_;
  std::vector<shm::RingProducer> to_workers_;    // by frontend
  std::vector<shm::RingConsumer> from_workers_;  // by frontend
  std::vector<shm::RingConsumer> to_bridges_;    // by bridge
  std::vector<shm::RingProducer> from_bridges_;  // by bridge
  Worker worker_;
};

TEST_F(WorkerStep, NothingToDoIsNoWork) {
  EXPECT_EQ(worker_.do_work(), 0u);
  EXPECT_TRUE(to_frontend().empty());
}

TEST_F(WorkerStep, AHeartbeatIsAnsweredInOnePass) {
  const shm::ConnectionId id = open_connection();
  client_frame(id, 1, 1, protocol::kHeartBeatReq,
               {std::byte{0}, std::byte{0}, std::byte{0x30}, std::byte{0x39}});  // 12345
  EXPECT_GT(worker_.do_work(), 0u);

  const std::vector<Written> out = to_frontend();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].type, ipc::kSend);
  const auto send = ipc::parse_record<ipc::SendHeader>(out[0].payload);
  ASSERT_TRUE(send.has_value());
  EXPECT_EQ(send->header.conn, id.value());
  // | size u16 = 6 | proto i16 = 1 | value i32 = 12345 |, as gonet2 answers.
  const std::vector<std::byte> wire(send->tail.begin(), send->tail.end());
  const std::vector<std::byte> expected = {std::byte{0},    std::byte{6},   std::byte{0},
                                           std::byte{1},    std::byte{0},   std::byte{0},
                                           std::byte{0x30}, std::byte{0x39}};
  EXPECT_EQ(wire, expected);
  EXPECT_EQ(segment_.sessions().find(id)->rx_seq, 1u);
}

TEST_F(WorkerStep, AReplayedSeqIsKickedWithBadSeq) {
  const shm::ConnectionId id = open_connection();
  client_frame(id, 1, 1, protocol::kHeartBeatReq, std::vector<std::byte>(4));
  client_frame(id, 2, 1, protocol::kHeartBeatReq, std::vector<std::byte>(4));  // seq 1 again
  worker_.do_work();

  std::optional<ipc::CloseCommand> close;
  for (const Written& w : to_frontend()) {
    if (w.type == ipc::kClose) close = ipc::parse_record<ipc::CloseCommand>(w.payload)->header;
  }
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(close->conn, id.value());
  EXPECT_EQ(static_cast<CloseReason>(close->reason), CloseReason::kBadSeq);
}

/// The close the worker asked the frontend for, if any.
std::optional<ipc::CloseCommand> close_of(const std::vector<Written>& written) {
  std::optional<ipc::CloseCommand> close;
  for (const Written& w : written) {
    if (w.type == ipc::kClose) close = ipc::parse_record<ipc::CloseCommand>(w.payload)->header;
  }
  return close;
}

TEST_F(WorkerStep, AnEndedSessionsKeysAreWiped) {
  const shm::ConnectionId id = open_connection();
  // get_seed_req: two DH public values; the worker keys both RC4 streams.
  client_frame(id, 1, 1, protocol::kGetSeedReq,
               {std::byte{0}, std::byte{0}, std::byte{0x12}, std::byte{0x34}, std::byte{0},
                std::byte{0}, std::byte{0x56}, std::byte{0x78}});
  worker_.do_work();
  const Session* s = segment_.sessions().find(id);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->crypto, Session::kLegacy);
  const auto* key_bytes = reinterpret_cast<const unsigned char*>(&s->cipher);
  const auto is_zero = [&] {
    return std::all_of(key_bytes, key_bytes + sizeof s->cipher,
                       [](unsigned char b) { return b == 0; });
  };
  ASSERT_FALSE(is_zero()) << "keyed";

  client_frame(id, 2, 2, protocol::kHeartBeatReq, std::vector<std::byte>(4));  // not RC4: garbage
  worker_.do_work();
  ASSERT_TRUE(close_of(to_frontend()).has_value());
  EXPECT_EQ(s->state, Session::kClosed);
  EXPECT_TRUE(is_zero()) << "the RC4 states outlived the session";
}

// An operator's kick (ControlBlock::kicks): the session is told why
// (client_error_ack: code kicked, the reason), then closed kicked_by_admin,
// and the mailbox says done once the batch is durable; a kick that finds
// nothing is done too, with none kicked.
TEST_F(WorkerStep, AnOperatorsKickTellsTheClientWhyThenCloses) {
  const shm::ConnectionId id = open_connection();
  worker_.do_work();
  to_frontend();
  KickRequest& k = segment_.control().kicks[0];
  const auto post = [&](std::uint64_t conn, std::int64_t user, std::string_view reason) {
    k.conn = conn;
    k.user_id = user;
    k.reason_bytes = static_cast<std::uint32_t>(reason.size());
    std::memcpy(k.reason, reason.data(), reason.size());
    k.posted.store(k.posted.load() + 1);
  };
  post(id.value(), 0, "maintenance");
  EXPECT_GT(worker_.do_work(), 0u);
  const std::vector<Written> out = to_frontend();
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[0].type, ipc::kSend);
  const auto send = ipc::parse_record<ipc::SendHeader>(out[0].payload);
  ASSERT_TRUE(send.has_value());
  const auto packet = protocol::parse_server_payload(send->tail.subspan(protocol::kSizeBytes));
  ASSERT_TRUE(packet.has_value());
  EXPECT_EQ(packet->proto, protocol::kClientErrorAck);
  const auto error = protocol::parse_client_error(packet->body);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, protocol::kErrorKicked);
  EXPECT_EQ(error->message, "maintenance");
  const auto close = close_of(out);
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(static_cast<CloseReason>(close->reason), CloseReason::kKickedByAdmin);
  EXPECT_EQ(k.done.load(), k.posted.load());
  EXPECT_EQ(k.kicked.load(), 1u);

  post(0, 1001, "nobody");  // no session of user 1001: done, none kicked
  worker_.do_work();
  EXPECT_TRUE(to_frontend().empty());
  EXPECT_EQ(k.done.load(), k.posted.load());
  EXPECT_EQ(k.kicked.load(), 0u);
}

TEST_F(WorkerStep, FramesBeyondTheBurstAreKickedWithRpmExceeded) {
  const shm::ConnectionId id = open_connection();
  for (std::uint32_t seq = 1; seq <= 6; ++seq) {
    client_frame(id, seq, seq, protocol::kHeartBeatReq, std::vector<std::byte>(4));
  }
  worker_.do_work();
  const auto written = to_frontend();
  const auto close = close_of(written);
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(static_cast<CloseReason>(close->reason), CloseReason::kRpmExceeded);
  EXPECT_EQ(written.size(), 5u + 1u) << "five heartbeats answered (rpm-burst), then the kick";
}

TEST_F(WorkerStep, BytesBeyondTheByteBurstAreKickedWithBpmExceeded) {
  const shm::ConnectionId id = open_connection();
  client_frame(id, 1, 1, protocol::kHeartBeatReq, std::vector<std::byte>(600));
  client_frame(id, 2, 2, protocol::kHeartBeatReq, std::vector<std::byte>(600));
  worker_.do_work();
  const auto close = close_of(to_frontend());
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(static_cast<CloseReason>(close->reason), CloseReason::kBpmExceeded);
}

// ------------------------------------------------------------------ login = auth:

Settings auth_settings() {
  Settings s = test_settings();
  s.login_mode = LoginMode::kAuthService;
  std::strcpy(s.login_file, "127.0.0.1:1");
  s.login_failures_per_ip = 2;
  s.login_failures_per_user = 1;
  s.login_failure_window_ms = 60'000;
  return s;
}

/// The worker with login = auth:, the test playing the bridge that asks the
/// auth service: AuthRequests out, AuthVerdicts in.
class WorkerAuth : public WorkerStep {
 protected:
  explicit WorkerAuth(const Settings& settings = auth_settings()) : WorkerStep(settings) {}

  std::vector<std::byte> login_body(std::string_view credential) {
    protocol::LoginRequest login;
    login.open_udid = "device-1";
    login.client_certificate = credential;
    std::vector<std::byte> body;
    protocol::encode_login(login, body);
    return body;
  }

  /// A connection that sent its login: the worker asked the bridge.
  shm::ConnectionId logging_in(std::string_view credential = "ann:secret") {
    const shm::ConnectionId id = open_connection();
    client_frame(id, 1, 1, protocol::kUserLoginReq, login_body(credential));
    worker_.do_work();
    return id;
  }

  /// The verdict, from the bridge that was asked (bridge_of_slot).
  void verdict(shm::ConnectionId id, std::int32_t user_id, LoginRefusal refusal,
               std::int32_t claimed = 0) {
    shm::RingProducer& from_bridge = from_bridges_[bridge_of_slot(id.slot(), settings_)];
    EXPECT_EQ(ipc::write_record(from_bridge, ipc::kAuthVerdict,
                                ipc::AuthVerdict{id.value(), user_id,
                                                 static_cast<std::uint32_t>(refusal), claimed, 0}),
              shm::WriteStatus::kOk);
    from_bridge.publish();
    worker_.do_work();
  }

  std::uint64_t refused(LoginRefusal why) const {
    return segment_.metrics().workers[0].logins_refused[static_cast<std::size_t>(why)].load();
  }

  /// The login ack's packet proto (11 ok, 12 failed) the frontend was handed.
  static std::optional<std::int16_t> ack_proto(const std::vector<Written>& written) {
    for (const Written& w : written) {
      if (w.type != ipc::kSend) continue;
      const auto send = ipc::parse_record<ipc::SendHeader>(w.payload);
      // | size u16 | proto i16 | ...
      return static_cast<std::int16_t>((std::to_integer<int>(send->tail[2]) << 8) |
                                       std::to_integer<int>(send->tail[3]));
    }
    return std::nullopt;
  }
};

TEST_F(WorkerAuth, ALoginWaitsForTheServicesVerdictThenOpensItsStream) {
  const std::vector<std::byte> body = login_body("ann:secret");
  const shm::ConnectionId id = logging_in("ann:secret");

  const auto asked = bridge_records();
  ASSERT_EQ(asked.size(), 1u);
  ASSERT_EQ(asked[0].type, ipc::kAuthRequest);
  const auto request = ipc::parse_record<ipc::AuthRequest>(asked[0].payload);
  EXPECT_EQ(request->header.conn, id.value());
  EXPECT_EQ(request->header.address[15], 1);
  EXPECT_EQ(request->header.port, 40000);
  EXPECT_TRUE(std::equal(request->tail.begin(), request->tail.end(), body.begin(), body.end()))
      << "the login body goes to the service as the client sent it";
  EXPECT_EQ(segment_.sessions().find(id)->state, Session::kAuthPending);
  EXPECT_FALSE(ack_proto(to_frontend()).has_value()) << "no answer before the verdict";

  verdict(id, 4242, LoginRefusal::kMalformed);
  const auto opened = bridge_records();
  ASSERT_EQ(opened.size(), 1u);
  ASSERT_EQ(opened[0].type, ipc::kStreamOpen);
  EXPECT_EQ(ipc::parse_record<ipc::StreamOpen>(opened[0].payload)->header.user_id, 4242);
  EXPECT_EQ(ack_proto(to_frontend()), protocol::kUserLoginSucceedAck);
  EXPECT_EQ(segment_.sessions().find(id)->state, Session::kLoggedIn);
  EXPECT_EQ(segment_.sessions().find(id)->user_id, 4242);
}

TEST_F(WorkerAuth, ARefusalCountsAgainstTheUserTheServiceNamed) {
  const shm::ConnectionId guess = logging_in("ann:wrong");
  bridge_records();
  verdict(guess, 0, LoginRefusal::kAuthRefused, 77);
  const auto refused_out = to_frontend();
  EXPECT_EQ(ack_proto(refused_out), protocol::kUserLoginFaildAck);
  ASSERT_TRUE(close_of(refused_out).has_value());
  EXPECT_EQ(static_cast<CloseReason>(close_of(refused_out)->reason), CloseReason::kLoginFailed);
  EXPECT_EQ(refused(LoginRefusal::kAuthRefused), 1u);

  // login-failures-per-user 1: user 77 is in backoff now, even with the
  // right password (a guess cannot tell right from wrong).
  const shm::ConnectionId owner = logging_in("ann:secret");
  ASSERT_EQ(bridge_records().size(), 1u) << "the address is not blocked: the service is asked";
  verdict(owner, 77, LoginRefusal::kMalformed);
  EXPECT_EQ(ack_proto(to_frontend()), protocol::kUserLoginFaildAck);
  EXPECT_EQ(refused(LoginRefusal::kUserBackoff), 1u);
  EXPECT_TRUE(bridge_records().empty()) << "no stream for a refused login";
}

TEST_F(WorkerAuth, AnUnansweredLoginIsRefusedButNotCountedAsAFailure) {
  // login-failures-per-ip 2: three refusals that are the service's fault
  // leave the address unblocked.
  for (const LoginRefusal why :
       {LoginRefusal::kAuthTimeout, LoginRefusal::kAuthBusy, LoginRefusal::kAuthUnavailable}) {
    const shm::ConnectionId id = logging_in();
    ASSERT_EQ(bridge_records().size(), 1u);
    verdict(id, 0, why);
    EXPECT_EQ(ack_proto(to_frontend()), protocol::kUserLoginFaildAck);
    EXPECT_EQ(refused(why), 1u);
  }
  const shm::ConnectionId next = logging_in();
  ASSERT_EQ(bridge_records().size(), 1u) << "asked, not refused address_backoff";
  EXPECT_EQ(refused(LoginRefusal::kAddressBackoff), 0u);
  verdict(next, 5, LoginRefusal::kMalformed);
  EXPECT_EQ(ack_proto(to_frontend()), protocol::kUserLoginSucceedAck);
}

TEST_F(WorkerAuth, AVerdictForASessionThatLeftIsIgnored) {
  const shm::ConnectionId id = logging_in();
  ASSERT_EQ(bridge_records().size(), 1u);
  const ipc::ConnClosed closed{id.value(), static_cast<std::uint32_t>(CloseReason::kClientClosed),
                               0};
  ASSERT_EQ(ipc::write_record(to_worker(id), ipc::kConnClosed, closed), shm::WriteStatus::kOk);
  to_worker(id).publish();
  worker_.do_work();
  to_frontend();
  EXPECT_TRUE(bridge_records().empty()) << "no stream was open: nothing to close";

  verdict(id, 9, LoginRefusal::kMalformed);
  EXPECT_FALSE(ack_proto(to_frontend()).has_value());
  EXPECT_TRUE(bridge_records().empty()) << "no stream for a session that is gone";
}

TEST_F(WorkerAuth, ALoginWithoutCredentialIsRefusedWithoutAsking) {
  logging_in("");
  EXPECT_TRUE(bridge_records().empty());
  const auto out = to_frontend();
  EXPECT_EQ(ack_proto(out), protocol::kUserLoginFaildAck);
  EXPECT_EQ(refused(LoginRefusal::kMalformed), 1u);
  ASSERT_TRUE(close_of(out).has_value());
  EXPECT_EQ(static_cast<CloseReason>(close_of(out)->reason), CloseReason::kLoginFailed);
}

// ------------------------------------------------------------------ bridge shards

/// Two frontends and two bridges; no rate limits (a test fills a ring).
Settings sharded(Settings s) {
  s.frontends = 2;
  s.bridges = 2;
  s.rpm_limit = 0;
  s.bpm_limit = 0;
  return s;
}

/// The `nth` open_udid whose accept-any user id (AcceptAnyLogin)
/// bridge_of_user puts on `bridge`.
std::string udid_on_bridge(std::uint32_t bridge, const Settings& settings, int nth = 0) {
  AcceptAnyLogin any;
  for (int n = 0; n < 1000; ++n) {
    std::string udid = "device-" + std::to_string(n);
    protocol::LoginRequest login;
    login.open_udid = udid;
    if (bridge_of_user(any.authenticate(login, 0).uid, settings) != bridge) continue;
    if (nth == 0) return udid;
    --nth;
  }
  ADD_FAILURE() << "no user id of bridge " << bridge;
  return "";
}

constexpr std::int16_t kGameProto = 2001;

/// `| proto | body |` of a game message.
std::vector<std::byte> game_payload(std::vector<std::byte> body) {
  std::vector<std::byte> message = {std::byte{kGameProto >> 8}, std::byte{kGameProto & 0xff}};
  message.insert(message.end(), body.begin(), body.end());
  return message;
}

/// The worker with two bridges (login = accept-any): the test plays both.
class WorkerBridges : public WorkerStep {
 protected:
  WorkerBridges() : WorkerStep(sharded(test_settings())) {}

  /// A session of frontend `frontend` logged in as `udid`'s user (its
  /// login frame has seq 1); the stream open read off its bridge's ring.
  shm::ConnectionId logged_in(const std::string& udid, std::uint32_t frontend = 0) {
    const shm::ConnectionId id = open_connection(frontend);
    login(id, udid);
    worker_.do_work();
    to_frontend(frontend);
    const auto opens = headers_of<ipc::StreamOpen>(bridge_records(bridge_of(id)), ipc::kStreamOpen);
    EXPECT_EQ(opens.size(), 1u);
    return id;
  }

  void login(shm::ConnectionId id, const std::string& udid) {
    protocol::LoginRequest request;
    request.open_udid = udid;
    std::vector<std::byte> body;
    protocol::encode_login(request, body);
    client_frame(id, 1, 1, protocol::kUserLoginReq, body);
  }

  /// Bridge `bridge` hands the worker a game message for `id`.
  void game_message(std::uint32_t bridge, shm::ConnectionId id, std::vector<std::byte> body) {
    EXPECT_EQ(ipc::write_record(from_bridges_[bridge], ipc::kGameMessage,
                                ipc::GameMessage{id.value(), 0}, game_payload(std::move(body))),
              shm::WriteStatus::kOk);
    from_bridges_[bridge].publish();
  }

  std::uint32_t bridge_of(shm::ConnectionId id) {
    return bridge_of_user(segment_.sessions().find(id)->user_id, settings_);
  }

  /// The game payloads (`| proto | body |`) the frontend was handed for `id`.
  static std::vector<std::vector<std::byte>> sends_to(const std::vector<Written>& written,
                                                      shm::ConnectionId id) {
    std::vector<std::vector<std::byte>> payloads;
    for (const Written& w : written) {
      if (w.type != ipc::kSend) continue;
      const auto send = ipc::parse_record<ipc::SendHeader>(w.payload);
      if (send->header.conn != id.value()) continue;
      const auto frame = send->tail.subspan(protocol::kSizeBytes);  // in clear
      payloads.emplace_back(frame.begin(), frame.end());
    }
    return payloads;
  }
};

TEST_F(WorkerBridges, EachSessionsStreamGoesToItsUsersBridgeOnly) {
  const shm::ConnectionId ann = open_connection();
  const shm::ConnectionId bob = open_connection();
  login(ann, udid_on_bridge(0, settings_));
  login(bob, udid_on_bridge(1, settings_));
  worker_.do_work();
  ASSERT_EQ(bridge_of(ann), 0u);
  ASSERT_EQ(bridge_of(bob), 1u);
  const std::int64_t users[] = {segment_.sessions().find(ann)->user_id,
                                segment_.sessions().find(bob)->user_id};
  const shm::ConnectionId ids[] = {ann, bob};

  // Opens, messages and closes: each on its user's bridge, none on the other.
  const auto expect_one_each = [&](std::uint32_t type, const char* what) {
    for (std::uint32_t b = 0; b < 2; ++b) {
      const std::vector<Written> written = bridge_records(b);
      ASSERT_EQ(written.size(), 1u) << what << " on bridge " << b;
      ASSERT_EQ(written[0].type, type) << what << " on bridge " << b;
      // Every stream record starts | conn u64 | user_id i64 |.
      const auto stream = ipc::parse_record<ipc::StreamClose>(written[0].payload);
      EXPECT_EQ(stream->header.conn, ids[b].value()) << what << " on bridge " << b;
      EXPECT_EQ(stream->header.user_id, users[b]) << what << " on bridge " << b;
    }
  };
  expect_one_each(ipc::kStreamOpen, "open");
  client_frame(ann, 2, 2, 1001, {std::byte{'a'}});
  client_frame(bob, 2, 2, 1001, {std::byte{'b'}});
  worker_.do_work();
  expect_one_each(ipc::kStreamMessage, "message");
  for (const shm::ConnectionId id : ids) {
    const ipc::ConnClosed closed{id.value(), static_cast<std::uint32_t>(CloseReason::kClientClosed),
                                 0};
    ASSERT_EQ(ipc::write_record(to_worker(id), ipc::kConnClosed, closed), shm::WriteStatus::kOk);
    to_worker(id).publish();
  }
  worker_.do_work();
  expect_one_each(ipc::kStreamClose, "close");
}

TEST_F(WorkerBridges, GameMessagesFromEachBridgeReachTheirSessions) {
  const shm::ConnectionId ann = logged_in(udid_on_bridge(0, settings_));
  const shm::ConnectionId bob = logged_in(udid_on_bridge(1, settings_), 1);
  game_message(0, ann, {std::byte{'a'}});
  game_message(1, bob, {std::byte{'b'}});
  EXPECT_EQ(worker_.do_work(), 2u);
  const auto to_ann = sends_to(to_frontend(0), ann);
  const auto to_bob = sends_to(to_frontend(1), bob);
  ASSERT_EQ(to_ann.size(), 1u);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_ann[0], game_payload({std::byte{'a'}}));
  EXPECT_EQ(to_bob[0], game_payload({std::byte{'b'}}));
}

// A full ring to bridge 0 holds back what may write to it: its users'
// sessions and any session that is not logged in yet (its login may open a
// stream on either bridge); bridge 1's users go on.
TEST_F(WorkerBridges, AFullBridgeRingHoldsBackOnlyWhatMayWriteToIt) {
  const shm::ConnectionId ann = logged_in(udid_on_bridge(0, settings_));     // frontend 0
  const shm::ConnectionId bob = logged_in(udid_on_bridge(1, settings_), 1);  // frontend 1

  // Ann's large messages, unread by bridge 0, until its ring lacks room.
  const std::vector<std::byte> large(60'000, std::byte{'x'});
  std::uint32_t ann_seq = 2;
  std::size_t forwarded = 0;
  for (; ann_seq < 40; ++ann_seq) {
    client_frame(ann, ann_seq, ann_seq, 1001, large);
    if (worker_.do_work() == 0) break;
    ++forwarded;
  }
  ASSERT_LT(ann_seq, 40u) << "bridge 0's ring never filled";
  ASSERT_GT(forwarded, 0u);

  // Bob's message, a game message to him, and a login on frontend 1.
  client_frame(bob, 2, 2, 1001, {std::byte{'b'}});
  game_message(1, bob, {std::byte{'g'}});
  const shm::ConnectionId cid = open_connection(1);
  login(cid, udid_on_bridge(1, settings_, 1));
  game_message(0, ann, {std::byte{'a'}});  // may close ann's stream: bridge 0's ring
  worker_.do_work();

  const auto to_bob = bridge_records(1);
  ASSERT_EQ(to_bob.size(), 1u) << "bob's message only: the login waits";
  EXPECT_EQ(to_bob[0].type, ipc::kStreamMessage);
  const auto frontend1 = to_frontend(1);
  ASSERT_EQ(sends_to(frontend1, bob).size(), 1u);
  EXPECT_EQ(sends_to(frontend1, bob)[0], game_payload({std::byte{'g'}}));
  EXPECT_TRUE(sends_to(frontend1, cid).empty()) << "no login ack while bridge 0 is full";
  EXPECT_TRUE(sends_to(to_frontend(0), ann).empty());
  EXPECT_EQ(segment_.sessions().find(cid)->state, Session::kOpen);

  // Bridge 0 reads its ring: everything held back goes.
  EXPECT_EQ(bridge_records(0).size(), forwarded);
  EXPECT_GT(worker_.do_work(), 0u);
  const auto to_ann = bridge_records(0);
  ASSERT_EQ(to_ann.size(), 1u);
  EXPECT_EQ(headers_of<ipc::StreamMessage>(to_ann, ipc::kStreamMessage).at(0).seq, ann_seq);
  EXPECT_EQ(headers_of<ipc::StreamOpen>(bridge_records(1), ipc::kStreamOpen).at(0).conn,
            cid.value());
  EXPECT_EQ(segment_.sessions().find(cid)->state, Session::kLoggedIn);
  EXPECT_EQ(sends_to(to_frontend(0), ann).size(), 1u);
}

// A worker SIGKILLed at each of its crash points (fault injection:
// successive incarnations die at successive points) while it reads and
// writes both bridges' rings: its successors roll every ring back or
// forward, so each bridge gets its user's messages, and each client its
// game messages, once and in order.
TEST_F(WorkerBridges, AWorkerKilledMidBatchRecoversEveryBridgesRings) {
  const shm::ConnectionId ann = logged_in(udid_on_bridge(0, settings_));
  const shm::ConnectionId bob = logged_in(udid_on_bridge(1, settings_));
  const shm::ConnectionId ids[] = {ann, bob};
  constexpr std::uint32_t kRounds = 3;  // the three crash points
  for (std::uint32_t round = 0; round < kRounds; ++round) {
    const auto body = std::vector<std::byte>{static_cast<std::byte>(round)};
    for (std::uint32_t b = 0; b < 2; ++b) {
      client_frame(ids[b], round + 2, round + 2, 1001, body);
      game_message(b, ids[b], body);
    }
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::setenv("GATEHOUSE_FAULT_KILL_PER_MILLE", "1000", 1);
      Worker doomed = make_worker();
      doomed.do_work();
      ::_exit(0);  // alive: the parent fails the test
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "round " << round;
  }
  Worker successor = make_worker();
  std::size_t passes = 0;
  while (successor.do_work() != 0) ASSERT_LT(++passes, 8u) << "the successor never ran dry";

  const std::vector<Written> frontend = to_frontend(0);
  for (std::uint32_t b = 0; b < 2; ++b) {
    const auto messages = headers_of<ipc::StreamMessage>(bridge_records(b), ipc::kStreamMessage);
    ASSERT_EQ(messages.size(), kRounds) << "bridge " << b;
    const auto sends = sends_to(frontend, ids[b]);
    ASSERT_EQ(sends.size(), kRounds) << "bridge " << b;
    for (std::uint32_t round = 0; round < kRounds; ++round) {
      EXPECT_EQ(messages[round].conn, ids[b].value());
      EXPECT_EQ(messages[round].seq, round + 2);
      EXPECT_EQ(sends[round], game_payload({static_cast<std::byte>(round)}));
    }
  }
}

/// login = auth: with two bridges.
class WorkerAuthBridges : public WorkerAuth {
 protected:
  WorkerAuthBridges() : WorkerAuth(sharded(auth_settings())) {}
};

// A login's auth request goes to its slot's bridge; the stream opens on its
// user's, whichever bridge brought the verdict.
TEST_F(WorkerAuthBridges, AnAuthRequestGoesToTheSlotsBridgeTheStreamToTheUsers) {
  const shm::ConnectionId first = logging_in();
  const shm::ConnectionId second = logging_in();
  ASSERT_NE(bridge_of_slot(first.slot(), settings_), bridge_of_slot(second.slot(), settings_))
      << "consecutive slots";
  const std::vector<Written> asked[2] = {bridge_records(0), bridge_records(1)};
  for (const shm::ConnectionId id : {first, second}) {
    // Its bridge's one record: none on the other bridge.
    const std::vector<Written>& written = asked[bridge_of_slot(id.slot(), settings_)];
    ASSERT_EQ(written.size(), 1u);
    ASSERT_EQ(written[0].type, ipc::kAuthRequest);
    EXPECT_EQ(ipc::parse_record<ipc::AuthRequest>(written[0].payload)->header.conn, id.value());
  }

  // A user of the other bridge than the one asked.
  std::int32_t user = 1;
  const std::uint32_t asked_bridge = bridge_of_slot(first.slot(), settings_);
  while (bridge_of_user(user, settings_) == asked_bridge) ++user;
  verdict(first, user, LoginRefusal::kMalformed);
  EXPECT_TRUE(bridge_records(asked_bridge).empty());
  const auto opens =
      headers_of<ipc::StreamOpen>(bridge_records(1 - asked_bridge), ipc::kStreamOpen);
  ASSERT_EQ(opens.size(), 1u);
  EXPECT_EQ(opens[0].conn, first.value());
  EXPECT_EQ(opens[0].user_id, user);
  EXPECT_EQ(ack_proto(to_frontend()), protocol::kUserLoginSucceedAck);
}

}  // namespace
}  // namespace gatehouse::worker
