// The gateway end to end: the real supervisor, frontend, workers and bridge
// (build/bin), real TCP clients, and a real gRPC game service written for the
// tests (FakeGameService). Byte-exact checks use RawSession, a client built
// from protocol.md with the tests' own DH and RC4.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/crypto/modern_crypto.h"
#include "gatehouse/shm/spsc_ring.h"
#include "gateway_process.h"
#include "http_get.h"
#include "raw_session.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::Client;

const std::vector<std::string> kTokens = {"tok-alice 1001", "tok-bob 1002", "tok-carol 1003",
                                          "tok-dave 1004", "tok-erin 1005"};

Wire login_body(std::string_view udid, std::string_view token) {
  using R = RawSession;
  return R::cat({R::u32(1), R::str(udid), R::str(token), R::u32(7), R::str("en"), R::str("app"),
                 R::str("linux"), R::str("box"), R::str("dev-1"), R::u32(2), R::str("10.0.0.1")});
}

/// A plain connect() to 127.0.0.1:`port`: 0, or the errno it failed with.
int connect_errno(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

game::Bytes game_bytes(std::initializer_list<std::uint8_t> v) {
  game::Bytes out;
  for (const auto b : v) out.push_back(std::byte{b});
  return out;
}

class GatewayTest : public ::testing::Test {
 protected:
  /// A gateway in front of game_; login by the token table unless
  /// `accept_any`.
  void start(std::vector<std::string> extra = {}, std::uint32_t workers = 1,
             bool accept_any = false, std::string listen = "127.0.0.1:0") {
    GatewayOptions options{game_.port(), workers, std::move(extra),
                           accept_any ? std::vector<std::string>{} : kTokens};
    options.listen = std::move(listen);
    gateway_.emplace(std::move(options));
  }

  /// A logged-in client (encrypted or not); `token` is also its open_udid,
  /// so with accept-any login each token is its own user.
  std::unique_ptr<Client> logged_in(std::string_view token, bool encrypt) {
    return logged_in_client(gateway_->port(), token, token, encrypt);
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

// ------------------------------------------------------------------ protocol table

/// kModern (version 2, pinning the gateway's key) asks for ChaCha20-Poly1305,
/// kModernAes for AES-256-GCM.
enum class Crypto { kClear, kLegacy, kModern, kModernAes };

/// An X25519 secret for RawSession::modern_key_exchange().
std::array<std::uint8_t, 32> modern_secret(std::uint8_t salt) {
  std::array<std::uint8_t, 32> secret{};
  for (std::size_t i = 0; i < secret.size(); ++i) {
    secret[i] = static_cast<std::uint8_t>(i * 13 + salt);
  }
  return secret;
}

/// Runs the session's key exchange, if any, checking the ack's shape.
void exchange(RawSession& s, std::uint32_t& seq, Crypto crypto, const GatewayProcess& gateway) {
  if (crypto == Crypto::kLegacy) {
    const Wire ack = s.key_exchange(seq++, 0x1234567, 0x7654321);
    ASSERT_EQ(ack.size(), 10u);
    EXPECT_EQ((Wire{ack[0], ack[1]}), (Wire{0x00, 0x1F})) << "get_seed_ack is proto 31, in clear";
    EXPECT_LT(RawSession::get_u32(ack, 2), 0x7FFFFFC3u);
    EXPECT_LT(RawSession::get_u32(ack, 6), 0x7FFFFFC3u);
  } else if (crypto == Crypto::kModern || crypto == Crypto::kModernAes) {
    const bool aes = crypto == Crypto::kModernAes;
    std::array<std::uint8_t, 32> pinned{};
    std::memcpy(pinned.data(), gateway.gateway_key().data(), pinned.size());
    const Wire ack = s.modern_key_exchange(seq, modern_secret(static_cast<std::uint8_t>(seq)),
                                           pinned, aes ? 1 : 0);
    ++seq;
    ASSERT_EQ(ack.size(), 67u);
    EXPECT_EQ((Wire{ack[0], ack[1]}), (Wire{0x00, 0x23}))
        << "key_exchange2_ack is proto 35, in clear";
    const bool aes_here = modern::available(modern::Aead::kAes256Gcm);
    EXPECT_EQ(ack[34], aes && aes_here ? 1 : 0) << "the AEAD granted";
  }
}

class GatewayProtocolTest : public GatewayTest, public ::testing::WithParamInterface<Crypto> {};

// Every row of the protocol table, byte for byte, in clear, legacy and modern
// mode.
TEST_P(GatewayProtocolTest, EveryRowOfTheProtocolTableByteExact) {
  start();
  RawSession s(gateway_->port());
  std::uint32_t seq = 1;
  exchange(s, seq, GetParam(), *gateway_);
  // 0 heart_beat_req -> 1 heart_beat_ack, same id.
  s.send(seq++, 0, RawSession::u32(0x12345678));
  EXPECT_EQ(s.read_payload(), (Wire{0x00, 0x01, 0x12, 0x34, 0x56, 0x78}));
  // 10 user_login_req -> 11 user_login_succeed_ack, uid int32.
  s.send(seq++, 10, login_body("alice-phone", "tok-alice"));
  EXPECT_EQ(s.read_payload(), (Wire{0x00, 0x0B, 0x00, 0x00, 0x03, 0xE9}));
  ASSERT_TRUE(game_.wait_for_streams(1, kPatience));
  // > 1000 is forwarded as | proto | body | (no seq) and the game's Message
  // comes back as one payload.
  s.send(seq++, 1001, {'p', 'i', 'n', 'g', '!'});
  ASSERT_TRUE(game_.wait_for_frames(1001, 1, kPatience));
  EXPECT_EQ(game_.frames(1001).at(0), game_bytes({0x03, 0xE9, 'p', 'i', 'n', 'g', '!'}));
  EXPECT_EQ(s.read_payload(), (Wire{0x03, 0xEA, 'p', 'i', 'n', 'g', '!'}));
  // A push from the game, any proto and body.
  ASSERT_TRUE(game_.push(1001, game_bytes({0x04, 0x00, 0xAB, 0x00, 0xCD})));
  EXPECT_EQ(s.read_payload(), (Wire{0x04, 0x00, 0xAB, 0x00, 0xCD}));
  // The streams stay in step across many frames.
  for (int i = 0; i < 50; ++i) {
    s.send(seq++, 0, RawSession::u32(static_cast<std::uint32_t>(i)));
    EXPECT_EQ(s.read_payload(),
              RawSession::cat({{0x00, 0x01}, RawSession::u32(static_cast<std::uint32_t>(i))}));
  }
  EXPECT_EQ(gateway_->log_count("reason="), 0u) << gateway_->log();
}

// However the client's bytes arrive, the frames come out whole and in order
// and RC4 stays in step: 300 frames in one write (far past the frontend's
// per-connection read-ahead), a frame a byte at a time, and the largest
// frame the default --max-frame allows.
TEST_P(GatewayProtocolTest, FramesSurviveAnyWayTheBytesArrive) {
  start({"--rpm-limit", "0"});  // 300 frames in a second is the point here
  RawSession s(gateway_->port());
  std::uint32_t seq = 1;
  exchange(s, seq, GetParam(), *gateway_);
  s.send(seq++, 10, login_body("burst", "tok-alice"));
  ASSERT_EQ(s.read_payload(), (Wire{0x00, 0x0B, 0x00, 0x00, 0x03, 0xE9}));
  const auto body_of = [](int i) {
    return RawSession::cat({RawSession::u32(static_cast<std::uint32_t>(i)),
                            Wire(static_cast<std::size_t>(i % 40), 'b')});
  };
  Wire burst;
  for (int i = 0; i < 300; ++i) {
    const Wire f = s.frame(seq++, 1001, body_of(i));
    burst.insert(burst.end(), f.begin(), f.end());
  }
  s.write(burst);
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(s.read_payload(), RawSession::cat({{0x03, 0xEA}, body_of(i)})) << "echo " << i;
  }
  const Wire dribble = s.frame(seq++, 1001, {'s', 'l', 'o', 'w'});
  for (const std::uint8_t byte : dribble) {
    s.write({byte});
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(s.read_payload(), (Wire{0x03, 0xEA, 's', 'l', 'o', 'w'}));
  // The largest message every receiver can take, whatever its crypto: a
  // payload of 65535 bytes with the modern tag (larger ones are refused at
  // the sender, so that no receiver is kicked for them: game_links test).
  Wire big(65535 - 6 - 16);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7);
  s.send(seq++, 1001, big);
  EXPECT_EQ(s.read_payload(), RawSession::cat({{0x03, 0xEA}, big}));
  s.send(seq++, 0, RawSession::u32(7));
  EXPECT_EQ(s.read_payload(), (Wire{0x00, 0x01, 0x00, 0x00, 0x00, 0x07}));
  EXPECT_EQ(gateway_->log_count("reason="), 0u) << gateway_->log();
}

TEST_P(GatewayProtocolTest, LoginRefusedRepliesTwelveAndCloses) {
  start();
  RawSession s(gateway_->port());
  std::uint32_t seq = 1;
  exchange(s, seq, GetParam(), *gateway_);
  s.send(seq++, 10, login_body("mallory", "wrong-token"));
  EXPECT_EQ(s.read_payload(), (Wire{0x00, 0x0C, 0x00, 0x00, 0x00, 0x00}));
  EXPECT_TRUE(s.wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=login_failed"));
}

// Issue 20: a refused login's open_udid landed in the log raw, so one client
// could forge log lines, send terminal escapes and write 60 KB per attempt.
// It is now one line, escaped, capped at 128 bytes with a count of the rest.
TEST_F(GatewayTest, RefusedLoginLogsTheOpenUdidEscapedAndCapped) {
  // The pre-login budget would refuse a 60 KB login before the worker saw
  // it: the escaping must hold where an operator allows one.
  start({"--prelogin-bytes", "131072"});
  const std::string forged = "2026-01-01T00:00:00.000 info  [worker-0] login conn=0x1 FORGED";
  const std::string padding(std::size_t{60} * 1024, 'A');
  const std::string udid = "mallory'\n" + forged + "\x1b[2J\r\n" + padding;
  RawSession s(gateway_->port());
  s.send(1, 10, login_body(udid, "wrong-token"));
  EXPECT_EQ(s.read_payload(), (Wire{0x00, 0x0C, 0x00, 0x00, 0x00, 0x00}));
  EXPECT_TRUE(s.wait_closed(kPatience));
  ASSERT_TRUE(gateway_->wait_log("reason=login_failed"));

  const std::string log = gateway_->log();
  EXPECT_EQ(log.find('\x1b'), std::string::npos) << "a terminal escape reached the log";
  EXPECT_EQ(gateway_->log_count("FORGED"), 1u);
  EXPECT_EQ(gateway_->log_count("login refused"), 1u);
  const auto at = log.find("login refused");
  const auto begin = log.rfind('\n', at) + 1;
  const std::string line = log.substr(begin, log.find('\n', at) - begin);
  EXPECT_NE(line.find("open_udid 'mallory\\'\\n2026-01-01T00:00:00.000 info  [worker-0] login"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("FORGED\\x1b[2J\\r\\nAAA"), std::string::npos) << line;
  EXPECT_NE(line.find(" bytes)'"), std::string::npos) << line;
  EXPECT_LT(line.size(), 400u) << "the 60 KB open_udid was not capped";
  EXPECT_LT(log.size(), 20'000u);
}

INSTANTIATE_TEST_SUITE_P(EachCrypto, GatewayProtocolTest,
                         ::testing::Values(Crypto::kClear, Crypto::kLegacy, Crypto::kModern,
                                           Crypto::kModernAes),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case Crypto::kLegacy:
                               return "Legacy";
                             case Crypto::kModern:
                               return "Modern";
                             case Crypto::kModernAes:
                               return "ModernAes";
                             default:
                               return "Clear";
                           }
                         });

// ------------------------------------------------------------------ modern mode

// The AEAD makes every frame count once: a frame written again (a replay at
// the TCP level), a flipped bit and a frame injected with no key are each
// kicked with decrypt_failed, and the others' sessions go on.
TEST_F(GatewayTest, ModernFramesThatFailToOpenKickWithDecryptFailed) {
  start();
  auto bystander = logged_in("tok-bob", /*encrypt=*/true);
  const auto offender = [&](const std::function<void(RawSession&, std::uint32_t&)>& attack) {
    RawSession s(gateway_->port());
    std::uint32_t seq = 1;
    exchange(s, seq, Crypto::kModern, *gateway_);
    attack(s, seq);
    EXPECT_TRUE(s.wait_closed(kPatience)) << "the offender is closed";
    ASSERT_TRUE(echo_works(*bystander, "still here"));
  };
  offender([](RawSession& s, std::uint32_t& seq) {
    const Wire beat = s.frame(seq++, 0, RawSession::u32(5));
    s.write(beat);
    EXPECT_EQ(s.read_payload(), (Wire{0x00, 0x01, 0x00, 0x00, 0x00, 0x05}));
    s.write(beat);  // the same bytes again
  });
  offender([](RawSession& s, std::uint32_t& seq) {
    Wire beat = s.frame(seq++, 0, RawSession::u32(6));
    beat[4] ^= 0x01;
    s.write(beat);
  });
  offender([](RawSession& s, std::uint32_t& seq) {
    // A clear heartbeat where a sealed payload is due.
    s.write(
        RawSession::cat({{0x00, 0x0A}, RawSession::u32(seq++), {0x00, 0x00}, RawSession::u32(7)}));
  });
  EXPECT_TRUE(gateway_->wait_log_count("reason=decrypt_failed", 3)) << gateway_->log();
  EXPECT_EQ(gateway_->log_count("reason="), 3u) << gateway_->log();
}

// A game message that cannot be framed with the 16-byte tag (65519 bytes is
// the largest) is dropped for that session and counted, not a kick (the
// receiver did nothing wrong); the largest that fits arrives whole.
TEST_F(GatewayTest, ModernSessionsTakeGameMessagesUpToTheLargestSealedPayload) {
  start();
  RawSession s(gateway_->port());
  std::uint32_t seq = 1;
  exchange(s, seq, Crypto::kModern, *gateway_);
  s.send(seq++, 10, login_body("big", "tok-alice"));
  ASSERT_EQ(s.read_payload(), (Wire{0x00, 0x0B, 0x00, 0x00, 0x03, 0xE9}));
  ASSERT_TRUE(game_.wait_for_streams(1, kPatience));
  game::Bytes largest(65519, std::byte{0x5A});
  largest[0] = std::byte{0x04};
  ASSERT_TRUE(game_.push(1001, largest));
  const auto got = s.read_payload();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), 65519u);
  ASSERT_TRUE(game_.push(1001, game::Bytes(65520, std::byte{0x04})));
  ASSERT_TRUE(game_.push(1001, game::Bytes(3, std::byte{0x04})));
  const auto next = s.read_payload();
  ASSERT_TRUE(next) << gateway_->log();
  EXPECT_EQ(next->size(), 3u) << "the one that does not fit is skipped";
  EXPECT_TRUE(gateway_->wait_log("does not fit its frame")) << gateway_->log();
  EXPECT_EQ(metric_sample(http_get(gateway_->metrics_port(), "/metrics"),
                          "gatehouse_game_messages_too_large_total"),
            1);
  EXPECT_EQ(gateway_->log_count("reason="), 0u) << gateway_->log();
}

// --listen HOST:PORT,crypto=MODES: what a listener's clients may speak.
TEST_F(GatewayTest, ListenerThatRequiresModernRefusesClearAndLegacy) {
  start({}, 1, /*accept_any=*/false, "127.0.0.1:0,crypto=modern");
  EXPECT_TRUE(gateway_->wait_log("(crypto=modern)")) << "the start log names the listener's crypto";
  {
    RawSession s(gateway_->port());
    s.send(1, 0, RawSession::u32(1));  // a clear heartbeat
    EXPECT_TRUE(s.wait_closed(kPatience));
  }
  {
    RawSession s(gateway_->port());
    std::uint32_t seq = 1;
    EXPECT_THROW(exchange(s, seq, Crypto::kLegacy, *gateway_), std::runtime_error)
        << "no get_seed_ack";
    EXPECT_TRUE(s.wait_closed(kPatience));
  }
  EXPECT_TRUE(gateway_->wait_log_count("reason=crypto_refused", 2)) << gateway_->log();
  Client modern;
  modern.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(modern.modern_key_exchange(gateway_->gateway_key(), kPatience));
  ASSERT_TRUE(modern.login("alice", "tok-alice", kPatience).ok());
  EXPECT_TRUE(echo_works(modern, "modern only"));
  EXPECT_TRUE(gateway_->wait_log("user=1001 crypto=modern/chacha20-poly1305")) << gateway_->log();
  EXPECT_EQ(metric_sample(http_get(gateway_->metrics_port(), "/metrics"),
                          "gatehouse_kicks_total{reason=\"crypto_refused\"}"),
            2);
}

TEST_F(GatewayTest, ListenerForAMigrationTakesBothExchangesButNothingInClear) {
  start({}, 1, /*accept_any=*/false, "127.0.0.1:0,crypto=modern+legacy");
  auto legacy = logged_in("tok-alice", /*encrypt=*/true);
  EXPECT_TRUE(echo_works(*legacy, "legacy"));
  Client modern;
  modern.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(modern.modern_key_exchange(gateway_->gateway_key(), kPatience));
  ASSERT_TRUE(modern.login("bob", "tok-bob", kPatience).ok());
  EXPECT_TRUE(echo_works(modern, "modern"));
  Client clear;
  clear.connect("127.0.0.1", gateway_->port());
  EXPECT_EQ(clear.login("carol", "tok-carol", kPatience).status,
            client::LoginResult::Status::kClosed);
  EXPECT_TRUE(gateway_->wait_log("reason=crypto_refused")) << gateway_->log();
}

TEST_F(GatewayTest, AcceptAnyLoginGivesEachDeviceItsOwnStableId) {
  start({}, 1, /*accept_any=*/true);
  Client a, b, a_again;
  for (Client* c : {&a, &b, &a_again}) c->connect("127.0.0.1", gateway_->port());
  const auto uid_a = a.login("device-a", "", kPatience).uid();
  const auto uid_b = b.login("device-b", "", kPatience).uid();
  const auto uid_a2 = a_again.login("device-a", "", kPatience).uid();
  EXPECT_GT(uid_a, 1);
  EXPECT_NE(uid_a, uid_b);
  EXPECT_EQ(uid_a, uid_a2);
}

// ------------------------------------------------------------------ kicks

/// Provokes one kick reason on an offender while a well-behaved bystander on
/// the same worker (there is one) keeps working, before and after.
class KickTest : public GatewayTest {
 protected:
  void expect_kick(const std::string& reason, const std::function<void(Client&)>& provoke,
                   bool offender_logs_in = true) {
    auto bystander = logged_in("tok-bob", /*encrypt=*/true);
    ASSERT_TRUE(echo_works(*bystander, "before"));
    auto offender = std::make_unique<Client>();
    offender->connect("127.0.0.1", gateway_->port());
    if (offender_logs_in) {
      ASSERT_TRUE(offender->login("udid", "tok-alice").ok());
    }
    provoke(*offender);
    EXPECT_TRUE(offender->wait_closed(kPatience)) << "the offender must see the close";
    EXPECT_TRUE(gateway_->wait_log("reason=" + reason)) << gateway_->log();
    EXPECT_TRUE(echo_works(*bystander, "after")) << "the bystander must be unaffected";
    EXPECT_FALSE(bystander->closed());
    EXPECT_EQ(gateway_->log_count("reason="), 1u) << "only the offender was kicked\n"
                                                  << gateway_->log();
  }
};

TEST_F(KickTest, BadSeq) {
  start();
  expect_kick("bad_seq",
              [](Client& c) { c.send_with_seq(c.next_seq() + 3, 0, client::to_bytes("abcd")); });
}

TEST_F(KickTest, ReplayedSeq) {
  start();
  expect_kick("bad_seq", [](Client& c) { c.send_with_seq(1, 0, client::to_bytes("abcd")); });
}

TEST_F(KickTest, UnknownProto) {
  start();
  expect_kick("unknown_proto", [](Client& c) { c.send(500, client::to_bytes("x")); });
}

TEST_F(KickTest, NotLoggedIn) {
  start();
  expect_kick(
      "not_logged_in", [](Client& c) { c.send(1001, client::to_bytes("x")); },
      /*offender_logs_in=*/false);
}

TEST_F(KickTest, FrameTooLarge) {
  start({"--max-frame", "300"});
  expect_kick("frame_too_large", [](Client& c) { c.send(1001, std::vector<std::byte>(400)); });
}

TEST_F(KickTest, BadBodyShortHeartbeat) {
  start();
  expect_kick("bad_body", [](Client& c) { c.send(0, client::to_bytes("ab")); });
}

TEST_F(KickTest, BadBodyPayloadShorterThanHeader) {
  start();
  expect_kick("bad_body", [](Client& c) { c.send_payload(client::to_bytes("abc")); });
}

TEST_F(KickTest, RpmExceeded) {
  start({"--rpm-limit", "6"});
  expect_kick("rpm_exceeded", [](Client& c) {
    for (int i = 0; i < 10; ++i) c.send(0, client::to_bytes("beat"));
  });
}

TEST_F(KickTest, KickedByGame) {
  start();
  expect_kick("kicked_by_game", [this](Client&) {
    ASSERT_TRUE(game_.wait_for_streams(2, kPatience));
    ASSERT_TRUE(game_.kick(1001));
  });
}

TEST_F(KickTest, BackendStreamFails) {
  start();
  expect_kick("backend_unavailable", [this](Client&) {
    ASSERT_TRUE(game_.wait_for_streams(2, kPatience));
    ASSERT_TRUE(game_.fail_stream(1001));
  });
}

TEST_F(KickTest, ReadTimeout) {
  start({"--read-timeout", "0.6"});
  auto bystander = logged_in("tok-bob", true);
  Client silent;
  silent.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(silent.login("udid", "tok-alice", kPatience).ok());
  // The bystander keeps talking; the silent one says nothing.
  for (int i = 0; i < 15 && !silent.closed(); ++i) {
    ASSERT_TRUE(echo_works(*bystander, "alive"));
    silent.wait_closed(100ms);
  }
  EXPECT_TRUE(silent.wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=read_timeout"));
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), 1u) << gateway_->log();
}

TEST_F(KickTest, SlowConsumer) {
  start({"--txqueuelen", "16", "--sockbuf", "4096"});
  auto bystander = logged_in("tok-bob", true);
  Client sleeper;  // never reads
  sleeper.connect("127.0.0.1", gateway_->port());
  const int small = 4096;
  ::setsockopt(sleeper.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ASSERT_TRUE(sleeper.login("udid", "tok-alice", kPatience).ok());
  ASSERT_TRUE(game_.wait_for_streams(2, kPatience));
  const std::vector<std::byte> blob(1000, std::byte{0x5a});
  std::vector<std::byte> message{std::byte{0x04}, std::byte{0x01}};
  message.insert(message.end(), blob.begin(), blob.end());
  for (int i = 0; i < 3000 && !gateway_->wait_log("reason=slow_consumer", 0ms); ++i) {
    game_.push(1001, message);
    if (i % 100 == 99) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gateway_->wait_log("reason=slow_consumer"));
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), 1u) << gateway_->log();
}

TEST_F(KickTest, LoginFailed) {
  start();
  expect_kick(
      "login_failed", [](Client& c) { EXPECT_FALSE(c.login("udid", "nope", kPatience).ok()); },
      /*offender_logs_in=*/false);
}

// ------------------------------------------------------------------ game pushes

TEST_F(GatewayTest, GamePushesReachManySessions) {
  start({}, 2, /*accept_any=*/true);
  constexpr int kClients = 40;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    auto c = std::make_unique<Client>();
    c->connect("127.0.0.1", gateway_->port());
    if (i % 2 == 0) {
      ASSERT_TRUE(c->key_exchange(kPatience).has_value());
    }
    ASSERT_TRUE(c->login("player-" + std::to_string(i), "").ok());
    clients.push_back(std::move(c));
  }
  ASSERT_TRUE(game_.wait_for_streams(kClients, kPatience));
  for (const FakeStream& s : game_.streams()) {
    const std::string text = "for " + std::to_string(s.user_id);
    std::vector<std::byte> message{std::byte{0x07}, std::byte{0xD0}};
    const auto body = client::to_bytes(text);
    message.insert(message.end(), body.begin(), body.end());
    ASSERT_TRUE(game_.push(s.user_id, message));
  }
  for (auto& c : clients) {
    const auto p = c->receive_proto(2000, kPatience);
    ASSERT_TRUE(p.has_value());
    const std::string got(reinterpret_cast<const char*>(p->body.data()), p->body.size());
    EXPECT_EQ(got.rfind("for ", 0), 0u);
  }
  // Each got its own: the uid in the text is the one the login returned.
  EXPECT_EQ(gateway_->log_count("reason="), 0u);
}

// A game service built with the later Frame numbering (Kick = 2) behind a
// gateway configured for it.
TEST(GatewayNumbering, LaterGenerationKickIsUnderstood) {
  FakeGameService game({.numbering = FrameNumbering::kLaterGeneration, .echo = true});
  GatewayProcess gateway({game.port(), 1, {"--backend-numbering", "later"}, kTokens});
  Client c;
  c.connect("127.0.0.1", gateway.port());
  ASSERT_TRUE(c.login("udid", "tok-alice", kPatience).ok());
  ASSERT_TRUE(c.send(1001, client::to_bytes("hi")));
  const auto echo = c.receive_proto(1002, kPatience);
  ASSERT_TRUE(echo.has_value());
  ASSERT_TRUE(game.kick(1001));
  EXPECT_TRUE(c.wait_closed(kPatience));
  EXPECT_TRUE(gateway.wait_log("reason=kicked_by_game"));
}

// ------------------------------------------------------------------ drain

TEST_F(GatewayTest, SigtermFlushesQueuedOutputClosesStreamsAndExitsZero) {
  // Small gateway-side socket buffers: most of what the game pushes waits in
  // the gateway's queues when the signal comes.
  start({"--txqueuelen", "100000", "--sockbuf", "4096", "--drain-timeout", "30"}, 2,
        /*accept_any=*/true);
  constexpr int kClients = 8;
  constexpr int kMessages = 400;  // x 1000 B per client
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::int32_t> uids;
  for (int i = 0; i < kClients; ++i) {
    auto c = std::make_unique<Client>();
    c->connect("127.0.0.1", gateway_->port());
    if (i % 2 == 1) {
      ASSERT_TRUE(c->key_exchange(kPatience).has_value());
    }
    const auto login = c->login("drain-" + std::to_string(i), "");
    ASSERT_TRUE(login.ok());
    uids.push_back(login.uid());
    clients.push_back(std::move(c));
  }
  ASSERT_TRUE(game_.wait_for_streams(kClients, kPatience));
  const std::string sent = "gatehouse_client_frames_sent_total";
  const double sent_before = metric_sample(http_get(gateway_->metrics_port(), "/metrics"), sent);
  for (int m = 0; m < kMessages; ++m) {
    for (const std::int32_t uid : uids) {
      std::vector<std::byte> message(1000, std::byte{static_cast<std::uint8_t>(m)});
      message[0] = std::byte{0x08};
      message[1] = std::byte{0x00};
      ASSERT_TRUE(game_.push(uid, message));
    }
  }
  // Every push reaches the frontend's queues (the clients read nothing yet):
  // the workers have written each as a frame for its client.
  const double pushed = sent_before + kClients * kMessages;
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (metric_sample(http_get(gateway_->metrics_port(), "/metrics"), sent) < pushed &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GE(metric_sample(http_get(gateway_->metrics_port(), "/metrics"), sent), pushed);
  std::vector<pid_t> children{gateway_->frontend_pid(), gateway_->bridge_pid(),
                              gateway_->worker_pid(0), gateway_->worker_pid(1)};
  ::kill(gateway_->pid(), SIGTERM);
  // Draining, it refuses new clients at once (they reconnect elsewhere)
  // instead of leaving them in a backlog nobody accepts from.
  ASSERT_TRUE(gateway_->wait_log("draining: stopped accepting"));
  EXPECT_EQ(connect_errno(gateway_->port()), ECONNREFUSED);

  // Every client reads everything that was queued, then sees the close.
  std::vector<std::string> errors(std::size_t{kClients});
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < std::size_t{kClients}; ++i) {
    readers.emplace_back([&, i] {
      for (int m = 0; m < kMessages; ++m) {
        const auto p = clients[i]->receive(kPatience);
        if (!p || p->proto != 0x0800 || p->body.back() != std::byte{static_cast<std::uint8_t>(m)}) {
          errors[i] = "lost or wrong message " + std::to_string(m);
          return;
        }
      }
      if (!clients[i]->wait_closed(kPatience)) errors[i] = "not closed";
    });
  }
  for (auto& t : readers) t.join();
  for (std::size_t i = 0; i < std::size_t{kClients}; ++i)
    EXPECT_EQ(errors[i], "") << "client " << i;

  const auto status = gateway_->terminate(30s);
  ASSERT_TRUE(status.has_value()) << "the gateway did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
  for (const std::int32_t uid : uids) {
    const auto end = game_.wait_for_stream_end(uid, kPatience);
    ASSERT_TRUE(end.has_value()) << "stream of " << uid << " did not end";
    EXPECT_TRUE(end->client_half_closed) << "the gateway must half-close, not cancel";
  }
  for (const pid_t pid : children)
    EXPECT_TRUE(process_gone(pid)) << "pid " << pid << " left behind";
  EXPECT_EQ(gateway_->log_count("reason=shutdown"), std::size_t{kClients});
  EXPECT_EQ(gateway_->log_count("drain timeout"), 0u) << gateway_->log();
}

TEST_F(GatewayTest, DrainWaitLetsSessionsGoOnThenClosesThem) {
  start({"--drain-wait", "1.5", "--drain-timeout", "10"}, 1, /*accept_any=*/true);
  auto c = logged_in("drain-wait", /*encrypt=*/true);
  ASSERT_TRUE(echo_works(*c, "before"));
  const auto signalled = std::chrono::steady_clock::now();
  ::kill(gateway_->pid(), SIGTERM);
  ASSERT_TRUE(gateway_->wait_log("draining: stopped accepting"));
  EXPECT_EQ(connect_errno(gateway_->port()), ECONNREFUSED);
  EXPECT_TRUE(echo_works(*c, "during the wait")) << "the session goes on while drain-wait runs";
  EXPECT_TRUE(c->wait_closed(kPatience));
  EXPECT_GE(std::chrono::steady_clock::now() - signalled, 1400ms)
      << "closed before drain-wait was over";
  const auto status = gateway_->terminate(kPatience);
  ASSERT_TRUE(status.has_value()) << "the gateway did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
  EXPECT_TRUE(gateway_->wait_log("drain-wait over"));
  EXPECT_EQ(gateway_->log_count("reason=shutdown"), 1u) << gateway_->log();
}

TEST_F(GatewayTest, AWorkerKilledDuringDrainWaitIsReplacedAndItsSessionsGoOn) {
  start({"--drain-wait", "4", "--drain-timeout", "10"}, 1, /*accept_any=*/true);
  auto c = logged_in("survivor", /*encrypt=*/true);
  ASSERT_TRUE(echo_works(*c, "before"));
  ::kill(gateway_->pid(), SIGTERM);
  ASSERT_TRUE(gateway_->wait_log("draining: stopped accepting"));
  const pid_t victim = gateway_->worker_pid(0);
  ASSERT_GT(victim, 0);
  ::kill(victim, SIGKILL);
  ASSERT_TRUE(gateway_->wait_log("worker-0 (pid " + std::to_string(victim) + ") was killed"));
  EXPECT_TRUE(echo_works(*c, "after the kill")) << gateway_->log();
  EXPECT_NE(gateway_->worker_pid(0), victim);
  EXPECT_TRUE(c->wait_closed(kPatience));  // at the end of the wait, with the rest
  const auto status = gateway_->terminate(kPatience);
  ASSERT_TRUE(status.has_value()) << "the gateway did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
  EXPECT_EQ(gateway_->log_count("reason=shutdown"), 1u) << gateway_->log();
}

TEST_F(GatewayTest, DrainWaitEndsWhenTheLastClientHasLeft) {
  start({"--drain-wait", "60", "--drain-timeout", "10"}, 1, /*accept_any=*/true);
  {
    auto c = logged_in("leaver", /*encrypt=*/false);
    ASSERT_TRUE(echo_works(*c, "hello"));
    ::kill(gateway_->pid(), SIGTERM);
    ASSERT_TRUE(gateway_->wait_log("draining: stopped accepting"));
    EXPECT_TRUE(echo_works(*c, "still here"));
  }                                                    // the player leaves
  const auto status = gateway_->terminate(kPatience);  // less than the 60 s wait
  ASSERT_TRUE(status.has_value()) << "waited out drain-wait with no session left";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
  EXPECT_EQ(gateway_->log_count("reason=client_closed"), 1u) << gateway_->log();
  EXPECT_EQ(gateway_->log_count("reason=shutdown"), 0u);
}

// ------------------------------------------------------------------ crashes

// A record no frontend writes (a close reason beyond CloseReason), put into
// worker 0's input ring as a buggy or hostile process could: the worker
// refuses it with one line and exits; the frontend and the bridge are not
// touched; once the record is gone the replacement serves the session on.
TEST_F(GatewayTest, ACorruptRecordKillsOnlyItsReaderWhichTheSupervisorReplaces) {
  start({}, 1, /*accept_any=*/true);
  auto c = logged_in("bystander", /*encrypt=*/true);
  ASSERT_TRUE(echo_works(*c, "before"));
  const pid_t victim = gateway_->worker_pid(0);
  const pid_t frontend = gateway_->frontend_pid();
  const pid_t bridge = gateway_->bridge_pid();
  ASSERT_GT(victim, 0);

  // The frontend publishes nothing while the client is silent, so the test
  // may append to its ring and take the record back afterwards.
  const shm::SpscRing ring = gateway_->segment().ring(RingKind::kFrontendToWorker, 0);
  shm::RingDescriptor& d = ring.descriptor();
  const std::uint64_t tail = d.tail.load();
  const ipc::ConnClosed bad{shm::ConnectionId(1, 0).value(), 250, 0};
  const shm::RecordHeader header{sizeof bad, ipc::kConnClosed};
  const std::uint64_t index = tail & (ring.capacity() - 1);
  ASSERT_LE(index + sizeof header + sizeof bad, ring.capacity());
  std::memcpy(ring.data() + index, &header, sizeof header);
  std::memcpy(ring.data() + index + sizeof header, &bad, sizeof bad);
  d.tail.store(tail + sizeof header + sizeof bad);

  EXPECT_TRUE(gateway_->wait_log("shared-memory violation: ring/fe-w/0: record at position " +
                                 std::to_string(tail) + " type 3: reason = 250"))
      << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log("worker-0 (pid " + std::to_string(victim) + ")"));
  d.tail.store(tail);  // taken back: a replacement that finds it still dies the same way
  EXPECT_TRUE(echo_works(*c, "after")) << gateway_->log();
  EXPECT_NE(gateway_->worker_pid(0), victim);
  EXPECT_EQ(gateway_->frontend_pid(), frontend);
  EXPECT_EQ(gateway_->bridge_pid(), bridge);
}

TEST_F(GatewayTest, KilledWorkerIsRestartedAndNewSessionsWork) {
  start({}, 2, /*accept_any=*/true);
  auto before = logged_in("tok-alice", true);
  ASSERT_TRUE(echo_works(*before, "hello"));
  const pid_t victim = gateway_->worker_pid(0);
  ASSERT_GT(victim, 0);
  ::kill(victim, SIGKILL);
  ASSERT_TRUE(gateway_->wait_log("worker-0 (pid " + std::to_string(victim) + ") was killed"));
  for (int i = 0; i < 200 && (gateway_->worker_pid(0) == victim || gateway_->worker_pid(0) == 0);
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(gateway_->worker_pid(0), victim) << "worker-0 was not restarted";
  // New sessions on both workers work.
  for (int i = 0; i < 6; ++i) {
    Client c;
    c.connect("127.0.0.1", gateway_->port());
    ASSERT_TRUE(c.key_exchange(kPatience).has_value());
    ASSERT_TRUE(c.login("after-" + std::to_string(i), "").ok());
    EXPECT_TRUE(echo_works(c, "after crash"));
  }
  // The old session either still works or is closed; it never hangs.
  before->send(1001, client::to_bytes("still there?"));
  const auto reply = before->receive_proto(1002, kPatience);
  EXPECT_TRUE(reply.has_value() || before->closed());
  EXPECT_TRUE(process_gone(victim));
}

TEST_F(GatewayTest, KilledFrontendIsRestartedAndItsSessionsAreClosed) {
  start({}, 2, /*accept_any=*/true);
  std::vector<std::unique_ptr<Client>> before;
  for (int i = 0; i < 4; ++i) before.push_back(logged_in("old-" + std::to_string(i), i % 2 == 0));
  ASSERT_TRUE(game_.wait_for_streams(4, kPatience));
  const pid_t victim = gateway_->frontend_pid();
  ::kill(victim, SIGKILL);
  for (auto& c : before) EXPECT_TRUE(c->wait_closed(kPatience)) << "the kernel closes its sockets";
  // The new frontend closes the dead one's sessions: logged, streams ended.
  EXPECT_TRUE(gateway_->wait_log("4 connections of a previous frontend were lost"));
  for (const FakeStream& s : game_.streams()) {
    const auto end = game_.wait_for_stream_end(s.user_id, kPatience);
    EXPECT_TRUE(end.has_value() && end->client_half_closed) << "stream of " << s.user_id;
  }
  EXPECT_EQ(gateway_->log_count("reason=io_error"), 4u);
  EXPECT_NE(gateway_->frontend_pid(), victim);
  // New connections work again, with the slots released.
  for (int i = 0; i < 4; ++i) {
    auto c = logged_in("new-" + std::to_string(i), i % 2 == 1);
    EXPECT_TRUE(echo_works(*c, "again"));
  }
}

TEST_F(GatewayTest, ConnectionsOverTheLimitAreRefusedOthersServed) {
  start({"--max-connections", "3"});
  std::vector<std::unique_ptr<Client>> held;
  for (const char* token : {"tok-alice", "tok-bob", "tok-carol"})
    held.push_back(logged_in(token, false));
  Client extra;
  extra.connect("127.0.0.1", gateway_->port());
  EXPECT_TRUE(extra.wait_closed(kPatience)) << "the fourth connection must be closed at once";
  EXPECT_TRUE(gateway_->wait_log("connection limit 3 reached"));
  for (auto& c : held) EXPECT_TRUE(echo_works(*c, "still here"));
  held.pop_back();  // one leaves: a new one gets in
  ASSERT_TRUE(gateway_->wait_log("reason=client_closed"));
  std::this_thread::sleep_for(100ms);
  auto again = logged_in("tok-dave", false);
  EXPECT_TRUE(echo_works(*again, "in"));
}

/// How many refusals the log accounts for: each line of `line_text`, plus
/// the "(N similar suppressed)" it or a flush line (`site`) reports.
std::size_t refusals_logged(const std::string& log, const std::string& line_text,
                            const std::string& site, std::size_t& lines) {
  std::size_t total = 0;
  lines = 0;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    const bool own = line.find(line_text) != std::string::npos;
    if (!own && line.find(site + " (") == std::string::npos) continue;
    if (own) ++lines, ++total;
    if (const auto open = line.rfind(" (");
        open != std::string::npos && line.find("similar suppressed)", open) != std::string::npos)
      total += std::stoul(line.substr(open + 2));
  }
  return total;
}

// Issue 20: a flood over the connection limit wrote one warning per refused
// connection (2,800 lines). Now at most one line a second, and the count of
// the others follows, so the log still accounts for every refusal.
TEST_F(GatewayTest, AFloodOverTheConnectionLimitWritesABoundedNumberOfLines) {
  // The connection limit's refusals, not the connect rate's (its own test).
  start({"--max-connections", "3", "--connect-rate", "0", "--connect-rate-per-ip", "0"});
  std::vector<std::unique_ptr<Client>> held;
  for (const char* token : {"tok-alice", "tok-bob", "tok-carol"})
    held.push_back(logged_in(token, false));
  constexpr std::size_t kBatch = 100;
  constexpr std::size_t kFlood = 10 * kBatch;
  const auto start_time = std::chrono::steady_clock::now();
  for (std::size_t batch = 0; batch < kFlood / kBatch; ++batch) {
    std::vector<int> fds;
    for (std::size_t i = 0; i < kBatch; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(gateway_->port());
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
      fds.push_back(fd);
    }
    for (const int fd : fds) {  // each is refused (closed) by the gateway
      timeval timeout{static_cast<time_t>(std::chrono::seconds(kPatience).count()), 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      char byte = 0;
      EXPECT_LE(::recv(fd, &byte, 1, 0), 0);
      ::close(fd);
    }
  }
  const double flood_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();

  const std::string line_text = "refused: connection limit 3 reached";
  const std::string site = "connection refused: connection limit reached";
  std::size_t lines = 0;
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (refusals_logged(gateway_->log(), line_text, site, lines) < kFlood &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(refusals_logged(gateway_->log(), line_text, site, lines), kFlood)
      << "every refusal is a line or in a count";
  // One line a second at most, plus the flush of the last count.
  EXPECT_LE(lines, static_cast<std::size_t>(flood_seconds) + 2) << flood_seconds << " s of flood";
  EXPECT_GE(gateway_->log_count("similar suppressed)"), 1u);
  EXPECT_EQ(metric_sample(http_get(gateway_->metrics_port(), "/metrics"),
                          "gatehouse_connections_refused_total{reason=\"connection_limit\"}"),
            static_cast<double>(kFlood));
  for (auto& c : held) EXPECT_TRUE(echo_works(*c, "still here"));
}

// log-connections: 'none' leaves out every session's open, login and close
// lines; 'sample:4' keeps about one session in four, each with all three;
// the metrics count every session either way.
TEST_F(GatewayTest, LogConnectionsLeavesOutOrSamplesTheSessionLines) {
  constexpr int kSessions = 40;
  for (const std::string mode : {"none", "sample:4"}) {
    start({"--log-connections", mode}, 1, /*accept_any=*/true);
    for (int i = 0; i < kSessions; ++i) {
      auto c = logged_in("player-" + std::to_string(i), false);
      ASSERT_TRUE(echo_works(*c, "hi")) << mode;
    }
    const std::string closed = "gatehouse_connections_closed_total{reason=\"client_closed\"}";
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (metric_sample(http_get(gateway_->metrics_port(), "/metrics"), closed) < kSessions &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_EQ(metric_sample(http_get(gateway_->metrics_port(), "/metrics"), closed), kSessions)
        << mode;
    const std::size_t opens = gateway_->log_count("] open conn=");
    const std::size_t logins = gateway_->log_count("] login conn=");
    const std::size_t closes = gateway_->log_count("] close conn=");
    if (mode == "none") {
      EXPECT_EQ(opens + logins + closes, 0u) << gateway_->log();
    } else {
      EXPECT_EQ(opens, logins) << "a sampled session has all of its lines";
      EXPECT_EQ(opens, closes) << "a sampled session has all of its lines";
      EXPECT_GE(opens, 2u) << "about a quarter of " << kSessions;
      EXPECT_LE(opens, 25u) << "about a quarter of " << kSessions;
    }
  }
}

/// A heartbeat round trip on a fresh connection from `source` (a loopback
/// address) to 127.0.0.1:`port`: whether the gateway served it.
bool heartbeat_from(const char* source, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(port);
  remote.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool served = false;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) == 0 &&
      ::connect(fd, reinterpret_cast<const sockaddr*>(&remote), sizeof remote) == 0) {
    const std::uint8_t beat[] = {0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 9};
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::uint8_t ack[8] = {};
    std::size_t got = 0;
    if (::send(fd, beat, sizeof beat, MSG_NOSIGNAL) == sizeof beat) {
      for (ssize_t n = 1; got < sizeof ack && n > 0; got += static_cast<std::size_t>(n > 0 ? n : 0))
        n = ::recv(fd, ack + got, sizeof ack - got, 0);
    }
    const std::uint8_t expected[] = {0, 6, 0, 1, 0, 0, 0, 9};
    served = got == sizeof ack && std::memcmp(ack, expected, sizeof ack) == 0;
  }
  ::close(fd);
  return served;
}

// --max-connections-per-ip: a client address over its share is refused at
// accept; other addresses, and the first address once one of its
// connections has gone, are served.
TEST_F(GatewayTest, ConnectionsOverThePerAddressLimitAreRefusedOthersServed) {
  start({"--max-connections-per-ip", "2", "--address-limits-exempt", "none"});
  auto first = logged_in("tok-alice", false);
  auto second = logged_in("tok-bob", /*encrypt=*/true);
  Client third;
  third.connect("127.0.0.1", gateway_->port());
  EXPECT_TRUE(third.wait_closed(kPatience)) << "a third connection from 127.0.0.1 is refused";
  EXPECT_TRUE(
      gateway_->wait_log("connection from 127.0.0.1 refused: 2 connections from that "
                         "address already"))
      << gateway_->log();
  EXPECT_TRUE(heartbeat_from("127.0.0.2", gateway_->port())) << "another address is served";
  EXPECT_TRUE(echo_works(*first, "still here"));
  EXPECT_TRUE(echo_works(*second, "still here"));
  EXPECT_EQ(metric_sample(http_get(gateway_->metrics_port(), "/metrics"),
                          "gatehouse_connections_refused_total{reason=\"address_limit\"}"),
            1);
  first.reset();  // one leaves: the address has room again
  ASSERT_TRUE(gateway_->wait_log("reason=client_closed"));
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {  // the slot is released on the worker's ack
    served = heartbeat_from("127.0.0.1", gateway_->port());
    if (!served) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(served);
}

TEST_F(GatewayTest, SupervisorKilledTakesEveryChildWithIt) {
  start({}, 2, /*accept_any=*/true);
  std::vector<pid_t> children{gateway_->frontend_pid(), gateway_->bridge_pid(),
                              gateway_->worker_pid(0), gateway_->worker_pid(1)};
  ::kill(gateway_->pid(), SIGKILL);
  for (const pid_t pid : children) {
    bool gone = false;
    for (int i = 0; i < 500 && !gone; ++i) {
      gone = process_gone(pid);
      if (!gone) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(gone) << "pid " << pid << " outlived the supervisor";
  }
}

TEST_F(GatewayTest, HungWorkerIsKilledAndReplacedWithoutDroppingItsSessions) {
  start({"--hang-timeout", "1"}, 2, /*accept_any=*/true);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(logged_in("hang-" + std::to_string(i), i % 2 == 0));
  for (auto& c : clients) ASSERT_TRUE(echo_works(*c, "before"));
  const pid_t victim = gateway_->worker_pid(0);
  ::kill(victim, SIGSTOP);  // alive, but making no progress
  ASSERT_TRUE(gateway_->wait_log("worker-0 (pid " + std::to_string(victim) + ") is hung", 5s));
  for (auto& c : clients) {
    EXPECT_TRUE(echo_works(*c, "after")) << "sessions of the hung worker carry on";
    EXPECT_FALSE(c->closed());
  }
  EXPECT_NE(gateway_->worker_pid(0), victim);
  EXPECT_EQ(gateway_->log_count("kick conn="), 0u);
}

// A reload whose worker binary on disk speaks another shm layout is refused,
// and the running workers stay.
TEST_F(GatewayTest, ReloadWithAnIncompatibleWorkerIsRefused) {
  const auto bin =
      std::filesystem::temp_directory_path() / ("gatehouse-bin-" + std::to_string(::getpid()));
  std::filesystem::create_directories(bin);
  for (const char* name : {"gatehouse-frontend", "gatehouse-worker", "gatehouse-bridge"}) {
    std::filesystem::copy_file(std::string(GATEHOUSE_BIN_DIR) + "/" + name, bin / name,
                               std::filesystem::copy_options::overwrite_existing);
  }
  start({"--bin-dir", bin.string()}, 2, /*accept_any=*/true);
  auto c = logged_in("stays", true);
  const pid_t w0 = gateway_->worker_pid(0), w1 = gateway_->worker_pid(1);
  // "Deploy" a worker built for layout version 999.
  std::filesystem::rename(bin / "gatehouse-worker", bin / "gatehouse-worker.old");
  std::ofstream(bin / "gatehouse-worker")
      << "#!/bin/sh\necho 'incompatible: segment has layout version 1; this binary speaks "
         "version 999' >&2\nexit 1\n";
  std::filesystem::permissions(bin / "gatehouse-worker", std::filesystem::perms::owner_all);
  ::kill(gateway_->pid(), SIGHUP);
  EXPECT_TRUE(gateway_->wait_log("reload refused, the running workers stay: incompatible"));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(gateway_->worker_pid(0), w0);
  EXPECT_EQ(gateway_->worker_pid(1), w1);
  EXPECT_TRUE(echo_works(*c, "still served"));
  std::filesystem::remove_all(bin);
}

// A reload reads the configuration file again: what can change live applies
// (the frontend's limits at once, the workers' as they are replaced), what
// cannot is named and kept; a file that does not parse changes nothing.
TEST_F(GatewayTest, ReloadAppliesTheConfigurationFileAgain) {
  const auto conf = std::filesystem::temp_directory_path() /
                    ("gatehouse-reload-" + std::to_string(::getpid()) + ".conf");
  // Loopback is exempt from max-connections-per-ip by default; not here.
  std::ofstream(conf) << "rpm-limit = 200\naddress-limits-exempt = none\n";
  start({"--config", conf.string()}, 1, /*accept_any=*/true);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(logged_in("reload-" + std::to_string(i), i == 1));
  for (auto& c : clients) ASSERT_TRUE(echo_works(*c, "before"));

  std::ofstream(conf) << "rpm-limit = 8\nmax-connections-per-ip = 3\nring-bytes = 2097152\n"
                         "address-limits-exempt = none\n";
  ::kill(gateway_->pid(), SIGHUP);
  ASSERT_TRUE(gateway_->wait_log("reload complete", kPatience)) << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log(
      "reload: settings applied: rpm-limit 200 -> 8, max-connections-per-ip 0 -> 3"))
      << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log("ring-bytes changed but needs a restart")) << gateway_->log();
  // The frontend: three connections from 127.0.0.1 are open, a fourth is not.
  // It takes the new settings on its next pass (up to its park timeout after
  // the supervisor published them, later on a loaded machine), not by the
  // time the supervisor logs "reload complete": a connection it accepted
  // before would be let in.
  ASSERT_TRUE(gateway_->wait_log("[frontend] settings reloaded")) << gateway_->log();
  EXPECT_NE(gateway_->log().find("max-connections-per-ip 3\n"), std::string::npos)
      << gateway_->log();
  Client fourth;
  fourth.connect("127.0.0.1", gateway_->port());
  EXPECT_TRUE(fourth.wait_closed(kPatience))
      << "max-connections-per-ip 3 applies to open connections";
  // The replaced worker: rpm-limit 8 is a bucket of 8 frames refilled at 8 a
  // minute (what the old limit left of it may cost one), so 6 echoes pass
  // and 3 more frames at once are over it.
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(echo_works(*clients[0], "under the limit"));
  // (a send after the kick may fail: the point is the kick)
  for (int i = 0; i < 3; ++i)
    static_cast<void>(clients[0]->send(1001, client::to_bytes("too many")));
  EXPECT_TRUE(clients[0]->wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=rpm_exceeded")) << gateway_->log();

  std::ofstream(conf) << "rpm-limit = lots\n";
  ::kill(gateway_->pid(), SIGHUP);
  EXPECT_TRUE(gateway_->wait_log("reload refused, the configuration does not parse"))
      << gateway_->log();
  EXPECT_TRUE(echo_works(*clients[1], "still served"));
  EXPECT_EQ(gateway_->log_count("reload complete"), 1u);
  std::filesystem::remove(conf);
}

TEST_F(GatewayTest, KilledBridgeIsReplacedAndReopensEveryGameStream) {
  start({}, 2, /*accept_any=*/true);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 6; ++i)
    clients.push_back(logged_in("bridge-" + std::to_string(i), i % 2 == 0));
  for (auto& c : clients) ASSERT_TRUE(echo_works(*c, "before"));
  ASSERT_TRUE(game_.wait_for_streams(6, kPatience));
  const pid_t victim = gateway_->bridge_pid();
  ::kill(victim, SIGKILL);
  ASSERT_TRUE(gateway_->wait_log("reopened the game streams of 6 logged-in sessions"))
      << gateway_->log();
  ASSERT_TRUE(game_.wait_for_streams(12, kPatience)) << "each session gets a new stream";
  for (auto& c : clients) {
    EXPECT_TRUE(echo_works(*c, "after")) << "the session must carry on";
    EXPECT_FALSE(c->closed());
  }
  EXPECT_EQ(gateway_->log_count("kick conn="), 0u) << gateway_->log();
}

// A bridge that restarts while the game service is down keeps trying to
// re-open the sessions' streams (with backoff) instead of kicking them.
TEST_F(GatewayTest, BridgeRestartWhileTheGameIsDownWaitsForIt) {
  start({}, 1, /*accept_any=*/true);
  auto c = logged_in("patient", true);
  ASSERT_TRUE(echo_works(*c, "before"));
  // Freeze the bridge so it never hears of the outage, take the game down,
  // then kill the bridge: its replacement finds the game service down.
  const pid_t bridge = gateway_->bridge_pid();
  ::kill(bridge, SIGSTOP);
  game_.stop();
  ::kill(bridge, SIGKILL);
  ASSERT_TRUE(gateway_->wait_log("reopened the game streams of 1 logged-in sessions"));
  std::this_thread::sleep_for(1500ms);  // several failed attempts
  EXPECT_FALSE(c->closed());
  EXPECT_EQ(gateway_->log_count("kick conn="), 0u) << gateway_->log();
  game_.start();
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    c->send(1001, client::to_bytes("back"));
    served = c->receive_proto(1002, 200ms).has_value();
  }
  EXPECT_TRUE(served) << "the stream is re-opened once the game is back";
  EXPECT_FALSE(c->closed());
}

TEST_F(GatewayTest, GameServiceDownKicksWithBackendUnavailable) {
  start();
  game_.stop();
  Client c;
  c.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(c.login("udid", "tok-alice", kPatience).ok());
  EXPECT_TRUE(c.wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=backend_unavailable"));
  game_.start();
  // Once the game service is back, players get in again within seconds (a
  // real client retries its login, as this one does).
  bool served = false;
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (!served && std::chrono::steady_clock::now() < deadline) {
    Client later;
    later.connect("127.0.0.1", gateway_->port());
    served = later.login("udid", "tok-bob", kPatience).ok() && echo_works(later, "back");
    if (!served) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(served) << gateway_->log();
}

}  // namespace
}  // namespace gatehouse::testing
