// The worker driven one duty-cycle pass at a time (Worker::do_work) on a real
// gateway segment: the test plays the frontend and the bridge at the other
// ends of the worker's rings, as docs/architecture.md draws them.
#include "gatehouse/worker/worker.h"

#include <unistd.h>

#include <algorithm>
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

/// A record the worker wrote, copied out of its ring.
struct Written {
  std::uint32_t type;
  std::vector<std::byte> payload;
};

class WorkerStep : public ::testing::Test {
 protected:
  explicit WorkerStep(const Settings& settings = test_settings())
      : segment_(GatewaySegment::create(
            "gatehouse-test-worker-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name(),
            settings)),
        to_worker_(segment_.ring(RingKind::kFrontendToWorker, 0)),
        from_worker_(segment_.ring(RingKind::kWorkerToFrontend, 0)),
        to_bridge_(segment_.ring(RingKind::kWorkerToBridge, 0)),
        from_bridge_(segment_.ring(RingKind::kBridgeToWorker, 0)),
        worker_(segment_, 0, shm::Doorbell::create(), doorbells(1), shm::Doorbell::create(),
                make_login_provider(settings)) {}

  /// Opens a connection as the frontend does: a slot, then kConnOpened.
  shm::ConnectionId open_connection() {
    shm::SlotTable slots = segment_.session_slots();
    const auto id = slots.allocate();
    EXPECT_TRUE(id.has_value());
    ipc::ConnOpened opened{};
    opened.conn = id->value();
    opened.address[15] = 1;
    opened.port = 40000;
    EXPECT_EQ(ipc::write_record(to_worker_, ipc::kConnOpened, opened), shm::WriteStatus::kOk);
    to_worker_.publish();
    return *id;
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
    EXPECT_EQ(ipc::write_record(to_worker_, ipc::kClientFrame, frame, payload),
              shm::WriteStatus::kOk);
    to_worker_.publish();
  }

  /// Everything the worker has published to the frontend so far.
  std::vector<Written> to_frontend() {
    std::vector<Written> out;
    from_worker_.read(
        [&](const shm::Record& r) {
          out.push_back({r.type, {r.payload.begin(), r.payload.end()}});
          return true;
        },
        1000);
    return out;
  }

  /// Everything the worker has published to the bridge so far.
  std::vector<Written> bridge_records() {
    std::vector<Written> out;
    to_bridge_.read(
        [&](const shm::Record& r) {
          out.push_back({r.type, {r.payload.begin(), r.payload.end()}});
          return true;
        },
        1000);
    return out;
  }

  GatewaySegment segment_;
  shm::RingProducer to_worker_;
  shm::RingConsumer from_worker_;
  shm::RingConsumer to_bridge_;
  shm::RingProducer from_bridge_;
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
  WorkerAuth() : WorkerStep(auth_settings()) {}

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

  void verdict(shm::ConnectionId id, std::int32_t user_id, LoginRefusal refusal,
               std::int32_t claimed = 0) {
    EXPECT_EQ(ipc::write_record(from_bridge_, ipc::kAuthVerdict,
                                ipc::AuthVerdict{id.value(), user_id,
                                                 static_cast<std::uint32_t>(refusal), claimed, 0}),
              shm::WriteStatus::kOk);
    from_bridge_.publish();
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
  ASSERT_EQ(ipc::write_record(to_worker_, ipc::kConnClosed, closed), shm::WriteStatus::kOk);
  to_worker_.publish();
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

}  // namespace
}  // namespace gatehouse::worker
