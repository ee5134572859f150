// What a process reads from the segment is checked before it acts on it
// (contract/shm_checks.h, record_reader.h): every record of every ring, the
// settings, the journal and a session's fields. A value no correct writer
// produces is a violation naming the region, the field and the value (here
// thrown by ThrowingViolations instead of ending the test).
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/record_reader.h"
#include "gatehouse/contract/shm_checks.h"
#include "throwing_violations.h"

namespace gatehouse {
namespace {

using ::testing::HasSubstr;
using testing::ShmViolation;
using testing::ThrowingViolations;

Settings two_workers() {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = 2;
  s.max_connections = 16;  // slots 0-7: worker 0, 8-15: worker 1
  s.ring_bytes = 1 << 16;
  s.listener_count = 1;
  return s;
}

/// A record of `type` whose payload is `header` then `tail`.
template <class Header>
struct Bytes {
  Bytes(std::uint32_t record_type, const Header& header, std::vector<std::byte> tail = {})
      : type(record_type) {
    payload.resize(sizeof header);
    std::memcpy(payload.data(), &header, sizeof header);
    payload.insert(payload.end(), tail.begin(), tail.end());
  }
  shm::Record record() const { return {type, payload, 64, 64 + 8 + payload.size()}; }
  std::uint32_t type;
  std::vector<std::byte> payload;
};

std::uint64_t conn(std::uint32_t slot) {
  return shm::ConnectionId(7, slot).value();
}

/// The violation `visit` raises, or "" when it accepted the record.
template <RingKind Kind>
std::string refusal(const ipc::RecordReader<Kind>& reader, const shm::Record& record) {
  const ThrowingViolations throwing;
  try {
    reader.visit(record, [](const auto&) {});
    return "";
  } catch (const ShmViolation& e) {
    return e.what();
  }
}

TEST(RecordReader, TakesEveryRecordAWriterOfItsRingWrites) {
  const Settings s = two_workers();
  const ipc::RecordReader<RingKind::kFrontendToWorker> fe_w(1, s);
  EXPECT_EQ(
      refusal(fe_w, Bytes(ipc::kConnOpened, ipc::ConnOpened{conn(8), {}, 1, 0, 0, 1000}).record()),
      "");
  EXPECT_EQ(refusal(fe_w, Bytes(ipc::kClientFrame, ipc::ClientFrame{conn(15), 1, 0},
                                std::vector<std::byte>(9))
                              .record()),
            "");
  EXPECT_EQ(refusal(fe_w, Bytes(ipc::kConnClosed, ipc::ConnClosed{conn(9), 19, 0}).record()), "");
  const ipc::RecordReader<RingKind::kWorkerToFrontend> w_fe(0, s);
  EXPECT_EQ(
      refusal(w_fe,
              Bytes(ipc::kSend, ipc::SendHeader{conn(0)}, std::vector<std::byte>(4)).record()),
      "");
  EXPECT_EQ(refusal(w_fe, Bytes(ipc::kClose, ipc::CloseCommand{conn(7), 0, 0}).record()), "");
  EXPECT_EQ(refusal(w_fe, Bytes(ipc::kLoggedIn, ipc::LoggedIn{conn(3)}).record()), "");
  const ipc::RecordReader<RingKind::kWorkerToBridge> w_br(0, s);
  EXPECT_EQ(refusal(w_br, Bytes(ipc::kStreamMessage, ipc::StreamMessage{conn(1), -5, 2},
                                std::vector<std::byte>(2))
                              .record()),
            "");
  const ipc::RecordReader<RingKind::kBridgeToWorker> br_w(0, s);
  // A game's values pass: its gRPC code, an empty message (the worker kicks).
  EXPECT_EQ(refusal(br_w, Bytes(ipc::kStreamEnded, ipc::StreamEnded{conn(1), -77, 0}).record()),
            "");
  EXPECT_EQ(refusal(br_w, Bytes(ipc::kGameMessage, ipc::GameMessage{conn(1), 0}).record()), "");
  // login = auth: a login body to the bridge, a verdict back.
  EXPECT_EQ(refusal(w_br, Bytes(ipc::kAuthRequest, ipc::AuthRequest{conn(2), {}, 1, 0, 0},
                                std::vector<std::byte>(30))
                              .record()),
            "");
  EXPECT_EQ(refusal(br_w, Bytes(ipc::kAuthVerdict, ipc::AuthVerdict{conn(2), 7, 0, 0, 0}).record()),
            "");
  const auto auth_refused = static_cast<std::uint32_t>(LoginRefusal::kAuthRefused);
  EXPECT_EQ(
      refusal(br_w,
              Bytes(ipc::kAuthVerdict, ipc::AuthVerdict{conn(2), 0, auth_refused, 9, 0}).record()),
      "");
}

TEST(RecordReader, RefusesWhatNoWriterWritesNamingRingFieldAndValue) {
  const Settings s = two_workers();
  const ipc::RecordReader<RingKind::kFrontendToWorker> fe_w(1, s);
  EXPECT_EQ(refusal(fe_w, Bytes(ipc::kConnClosed, ipc::ConnClosed{conn(9), 250, 0}).record()),
            "ring/fe-w/1: record at position 64 type 3: reason = 250 (a CloseReason)");
  EXPECT_THAT(refusal(fe_w, Bytes(ipc::kConnClosed, ipc::ConnClosed{conn(2), 0, 0}).record()),
              HasSubstr("conn's slot = 2 (a slot of another worker)"));
  EXPECT_THAT(refusal(fe_w, Bytes(ipc::kConnClosed, ipc::ConnClosed{conn(16), 0, 0}).record()),
              HasSubstr("conn's slot = 16 (beyond the session table)"));
  EXPECT_THAT(
      refusal(fe_w, Bytes(ipc::kConnOpened, ipc::ConnOpened{conn(8), {}, 1, 1, 0, 1000}).record()),
      HasSubstr("listener = 1"));
  EXPECT_THAT(
      refusal(fe_w, Bytes(ipc::kConnOpened, ipc::ConnOpened{conn(8), {}, 1, 0, 0, -1}).record()),
      HasSubstr("accepted_unix_ms"));
  EXPECT_THAT(refusal(fe_w, Bytes(ipc::kConnClosed, ipc::ConnClosed{conn(9), 0, 0},
                                  std::vector<std::byte>(1))
                                .record()),
              HasSubstr("payload bytes = 17 (its header)"));
  shm::Record short_frame = Bytes(ipc::kClientFrame, ipc::ClientFrame{conn(8), 1, 0}).record();
  short_frame.payload = short_frame.payload.first(15);
  EXPECT_THAT(refusal(fe_w, short_frame), HasSubstr("payload bytes = 15 (at least its header)"));
  EXPECT_THAT(refusal(fe_w, Bytes(ipc::kSend, ipc::SendHeader{conn(8)}).record()),
              HasSubstr("type = 10 (not a record of this ring)"));

  const ipc::RecordReader<RingKind::kWorkerToFrontend> w_fe(0, s);
  constexpr auto kBadReason = static_cast<std::uint32_t>(CloseReason::kCount);
  EXPECT_THAT(refusal(w_fe, Bytes(ipc::kClose, ipc::CloseCommand{conn(1), kBadReason, 0}).record()),
              HasSubstr("ring/w-fe/0: record at position 64 type 11: reason = " +
                        std::to_string(kBadReason)));
  const ipc::RecordReader<RingKind::kWorkerToBridge> w_br(0, s);
  EXPECT_THAT(refusal(w_br, Bytes(ipc::kStreamMessage, ipc::StreamMessage{conn(1), 5, 2},
                                  std::vector<std::byte>(1))
                                .record()),
              HasSubstr("message bytes = 1 (at least the proto)"));
  const ipc::RecordReader<RingKind::kBridgeToWorker> br_w(0, s);
  EXPECT_THAT(refusal(br_w, Bytes(ipc::kGameKick, ipc::GameKick{conn(8)}).record()),
              HasSubstr("ring/br-w/0: record at position 64 type 31: conn's slot = 8"));
  // A verdict refusing for a reason that is not the auth service's (the
  // worker would count it as something it is not), or naming negative ids.
  const auto backoff = static_cast<std::uint32_t>(LoginRefusal::kUserBackoff);
  EXPECT_THAT(
      refusal(br_w, Bytes(ipc::kAuthVerdict, ipc::AuthVerdict{conn(1), 0, backoff, 0, 0}).record()),
      HasSubstr("refusal = " + std::to_string(backoff) + " (an auth_* LoginRefusal)"));
  EXPECT_THAT(
      refusal(br_w, Bytes(ipc::kAuthVerdict, ipc::AuthVerdict{conn(1), -3, 0, 0, 0}).record()),
      HasSubstr("user_id"));
  const auto timeout = static_cast<std::uint32_t>(LoginRefusal::kAuthTimeout);
  EXPECT_THAT(
      refusal(br_w,
              Bytes(ipc::kAuthVerdict, ipc::AuthVerdict{conn(1), 0, timeout, -1, 0}).record()),
      HasSubstr("claimed_user_id"));
}

// With several bridges, a worker's ring to bridge b carries only the streams
// of b's users and the logins of b's slots; the replies name connections only.
TEST(RecordReader, ABridgesRingCarriesOnlyItsUsersAndItsLogins) {
  Settings s = two_workers();
  s.bridges = 2;
  std::int64_t users[2] = {-1, -1};  // a user of each bridge
  for (std::int64_t u = 1; users[0] < 0 || users[1] < 0; ++u) users[bridge_of_user(u, s)] = u;
  const std::uint32_t slot_of[2] = {bridge_of_slot(0, s) == 0 ? 0u : 1u,
                                    bridge_of_slot(0, s) == 0 ? 1u : 0u};
  for (std::uint32_t b = 0; b < 2; ++b) {
    const ipc::RecordReader<RingKind::kWorkerToBridge> w_br(0, s, b);
    const std::int64_t mine = users[b];
    const std::int64_t other = users[1 - b];
    EXPECT_EQ(
        refusal(w_br, Bytes(ipc::kStreamOpen, ipc::StreamOpen{conn(1), mine, 1, 0, 0}).record()),
        "");
    EXPECT_THAT(
        refusal(w_br, Bytes(ipc::kStreamOpen, ipc::StreamOpen{conn(1), other, 1, 0, 0}).record()),
        HasSubstr("user_id = " + std::to_string(other) + " (a user of another bridge)"));
    EXPECT_THAT(refusal(w_br, Bytes(ipc::kStreamMessage, ipc::StreamMessage{conn(1), other, 2},
                                    std::vector<std::byte>(2))
                                  .record()),
                HasSubstr("a user of another bridge"));
    EXPECT_THAT(refusal(w_br, Bytes(ipc::kStreamClose, ipc::StreamClose{conn(1), other}).record()),
                HasSubstr("a user of another bridge"));
    EXPECT_EQ(
        refusal(w_br,
                Bytes(ipc::kAuthRequest, ipc::AuthRequest{conn(slot_of[b]), {}, 0, 0, 0}).record()),
        "");
    EXPECT_THAT(
        refusal(
            w_br,
            Bytes(ipc::kAuthRequest, ipc::AuthRequest{conn(slot_of[1 - b]), {}, 0, 0, 0}).record()),
        HasSubstr("(a login of another bridge)"));
    const ipc::RecordReader<RingKind::kBridgeToWorker> br_w(0, s, b);
    EXPECT_EQ(refusal(br_w, Bytes(ipc::kGameKick, ipc::GameKick{conn(1)}).record()), "");
  }
  const ipc::RecordReader<RingKind::kWorkerToBridge> second(0, s, 1);
  EXPECT_THAT(
      refusal(second, Bytes(ipc::kStreamClose, ipc::StreamClose{conn(1), users[0]}).record()),
      HasSubstr("ring/w-br1/0: record at position 64"));
}

/// The violation `check` raises, or "".
template <class Check>
std::string refusal_of(Check&& check) {
  const ThrowingViolations throwing;
  try {
    check();
    return "";
  } catch (const ShmViolation& e) {
    return e.what();
  }
}

TEST(ShmChecks, SettingsMustFitTheirArraysAndEnums) {
  const auto refused = [](auto&& corrupt) {
    Settings s = two_workers();
    corrupt(s);
    return refusal_of([&] { check_settings(s, "settings"); });
  };
  EXPECT_EQ(refused([](Settings&) {}), "");
  EXPECT_EQ(refused([](Settings& s) { s.workers = 0; }),
            "control: settings: workers = 0 (1 to 64)");
  EXPECT_THAT(refused([](Settings& s) { s.workers = 65; }), HasSubstr("workers = 65"));
  EXPECT_THAT(refused([](Settings& s) { s.max_connections = 1; }),
              HasSubstr("max_connections = 1"));
  EXPECT_THAT(refused([](Settings& s) { s.bridges = 0; }), HasSubstr("bridges = 0 (1 to 8)"));
  EXPECT_THAT(refused([](Settings& s) { s.bridges = 9; }), HasSubstr("bridges = 9"));
  EXPECT_THAT(refused([](Settings& s) { s.backend_count = 9; }), HasSubstr("backend_count = 9"));
  EXPECT_THAT(refused([](Settings& s) {
                s.backend_count = 1;
                std::memset(s.backends[0], 'x', kAddressBytes);
              }),
              HasSubstr("backends[i] unterminated, i = 0"));
  EXPECT_THAT(refused([](Settings& s) { std::memset(s.login_file, 'x', kPathBytes); }),
              HasSubstr("login_file unterminated"));
  EXPECT_THAT(refused([](Settings& s) { s.listener_count = 17; }),
              HasSubstr("listener_count = 17"));
  EXPECT_THAT(refused([](Settings& s) { s.log_level = 7; }), HasSubstr("log_level = 7"));
  EXPECT_THAT(refused([](Settings& s) { s.login_mode = static_cast<LoginMode>(4); }),
              HasSubstr("login_mode = 4"));
  EXPECT_THAT(refused([](Settings& s) { s.numbering = static_cast<FrameNumbering>(5); }),
              HasSubstr("numbering = 5"));
  EXPECT_THAT(refused([](Settings& s) { s.listener_proxy[3] = static_cast<ProxyMode>(4); }),
              HasSubstr("listener_proxy[i], i = 3"));
  EXPECT_THAT(refused([](Settings& s) { s.listener_proxy_from_count[15] = kMaxProxyNetworks + 1; }),
              HasSubstr("listener_proxy_from_count[i], i = 15"));
  EXPECT_THAT(refused([](Settings& s) {
                s.listener_proxy_from_count[1] = 2;
                s.listener_proxy_from[1][1].prefix = 129;
              }),
              HasSubstr("listener_proxy_from[i][r].prefix, i * 8 + r = 9"));
}

TEST(ShmChecks, ASessionsFieldsMustBeOnesAWorkerWrites) {
  const Settings settings = two_workers();
  const auto refused = [&](auto&& corrupt) {
    Session s{};
    s.state = Session::kLoggedIn;
    corrupt(s);
    return refusal_of([&] {
      check_session(s, conn(3), settings);
      check_session_cipher(s, conn(3));
    });
  };
  EXPECT_EQ(refused([](Session&) {}), "");
  EXPECT_EQ(refused([](Session& s) { s.state = static_cast<Session::State>(6); }),
            "sessions: conn 0x700000003: state = 6 (0 to 5)");
  EXPECT_THAT(refused([](Session& s) { s.crypto = static_cast<Session::Crypto>(3); }),
              HasSubstr("crypto = 3"));
  EXPECT_THAT(refused([](Session& s) { s.listener = 1; }), HasSubstr("listener = 1"));
  EXPECT_THAT(refused([](Session& s) { s.opened_unix_ms = -1; }), HasSubstr("opened_unix_ms"));
  EXPECT_THAT(refused([](Session& s) { s.frames_tat_ns = INT64_MAX; }), HasSubstr("frames_tat_ns"));
  EXPECT_THAT(refused([](Session& s) { s.bytes_tat_ns = kMaxUnixNs + 1; }),
              HasSubstr("bytes_tat_ns"));
  EXPECT_THAT(refused([](Session& s) {
                s.crypto = Session::kModern;
                s.cipher.modern.seal.aead = static_cast<modern::Aead>(2);
              }),
              HasSubstr("cipher.modern aead = 2"));
}

TEST(ShmChecks, ASessionIdNamesItsWorkerOrNone) {
  const Settings s = two_workers();
  EXPECT_EQ(worker_of(conn(0), s), 0u);
  EXPECT_EQ(worker_of(conn(7), s), 0u);
  EXPECT_EQ(worker_of(conn(8), s), 1u);
  EXPECT_EQ(worker_of(conn(15), s), 1u);
  EXPECT_EQ(worker_of(conn(16), s), std::nullopt);
  EXPECT_EQ(worker_of(conn(0xFFFF'FFFF), s), std::nullopt);
}

TEST(ShmChecks, TheSegmentsAccessorsCheckWhatTheyHandOut) {
  const std::string name = "gatehouse-test-checks-" + std::to_string(::getpid());
  GatewaySegment segment = GatewaySegment::create(name, two_workers());
  const GatewaySegment reader = GatewaySegment::attach(name);

  Journal& journal = segment.journal(1);
  journal.count.store(kJournalEntries + 1);
  EXPECT_EQ(refusal_of([&] { (void)reader.journal(1); }), "journal/1: count = 1025 (at most 1024)");
  journal.count.store(0);
  journal.state.store(7);
  EXPECT_THAT(refusal_of([&] { (void)reader.journal(1); }), HasSubstr("journal/1: state = 7"));
  journal.state.store(Journal::kIdle);

  // A generation about to wrap: the reader's "was it rewritten meanwhile?"
  // test must not wrap with it (it used to loop for ever; found by the
  // shm_segment fuzz target).
  segment.publish_settings(two_workers());  // both copies whole
  segment.control().settings.generation.store(~std::uint64_t{0});
  EXPECT_EQ(refusal_of([&] { EXPECT_EQ(reader.settings().workers, 2u); }), "");
  segment.control().settings.generation.store(2);

  // A reload never changes the segment's shape: a copy that does is corrupt.
  Settings grown = two_workers();
  grown.workers = 3;
  segment.publish_settings(grown);
  EXPECT_THAT(refusal_of([&] { (void)reader.settings(); }),
              HasSubstr("workers 3, frontends 1, bridges 1 and max_connections 16 differ from the "
                        "segment's 2, 1, 1 and 16"));
  Settings broken = two_workers();
  broken.listener_count = 99;
  segment.publish_settings(broken);
  EXPECT_THAT(refusal_of([&] { (void)reader.settings(); }), HasSubstr("listener_count = 99"));
}

}  // namespace
}  // namespace gatehouse
