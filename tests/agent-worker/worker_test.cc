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

/// A record the worker wrote, copied out of its ring.
struct Written {
  std::uint32_t type;
  std::vector<std::byte> payload;
};

class WorkerStep : public ::testing::Test {
 protected:
  WorkerStep()
      : segment_(GatewaySegment::create(
            "gatehouse-test-worker-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name(),
            test_settings())),
        to_worker_(segment_.ring(RingKind::kFrontendToWorker, 0)),
        from_worker_(segment_.ring(RingKind::kWorkerToFrontend, 0)),
        to_bridge_(segment_.ring(RingKind::kWorkerToBridge, 0)),
        worker_(segment_, 0, shm::Doorbell::create(), shm::Doorbell::create(),
                shm::Doorbell::create(), make_login_provider(test_settings())) {}

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

  GatewaySegment segment_;
  shm::RingProducer to_worker_;
  shm::RingConsumer from_worker_;
  shm::RingConsumer to_bridge_;
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

}  // namespace
}  // namespace gatehouse::worker
