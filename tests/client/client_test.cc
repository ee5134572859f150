// gw::client against a fake gateway on 127.0.0.1:0 (fake_gateway.h): byte-
// exact framing and seq, the legacy key exchange and RC4 in both directions
// checked with the test's own reference RC4, the login body layout, and how
// receive() reports timeouts and closed connections.
#include "gatehouse/client/client.h"

#include <chrono>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/reference_crypto.h"
#include "fake_gateway.h"
#include "patience.h"

namespace gatehouse::client {
namespace {

using namespace std::chrono_literals;
using gatehouse::testing::kPatience;
using testing::Bytes;
using testing::bytes;
using testing::ClientFrame;
using ::testing::ElementsAre;
using testing::FakeConnection;
using testing::FakeListener;
using ::testing::HasSubstr;
using testing::ServerThread;
using testing::text_bytes;

/// A listener, a client connected to it and the accepted connection.
struct Connected {
  FakeListener listener;
  Client client;
  FakeConnection server;

  Connected() : server(connect_and_accept(listener, client)) {}

 private:
  static FakeConnection connect_and_accept(FakeListener& listener, Client& client) {
    client.connect("127.0.0.1", listener.port(), kPatience);
    return listener.accept();
  }
};

// ---------------------------------------------------------------- connect

TEST(ClientConnect, SetsNoDelayAndReportsLocalPort) {
  Connected c;
  EXPECT_TRUE(c.client.connected());
  EXPECT_NE(c.client.local_port(), 0);
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  ASSERT_EQ(::getsockopt(c.client.native_handle(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
  EXPECT_NE(nodelay, 0);
  EXPECT_EQ(c.client.next_seq(), 1u);
  EXPECT_FALSE(c.client.encrypted());
}

TEST(ClientConnect, ResolvesLocalhost) {
  FakeListener listener;
  Client client;
  client.connect("localhost", listener.port(), kPatience);  // may try ::1 first
  FakeConnection server = listener.accept();
  EXPECT_TRUE(client.connected());
}

TEST(ClientConnect, RefusedConnectionThrowsClientError) {
  std::uint16_t port = 0;
  {
    FakeListener closed_again;
    port = closed_again.port();
  }
  Client client;
  try {
    client.connect("127.0.0.1", port, kPatience);
    FAIL() << "connected to a closed port";
  } catch (const ClientError& e) {
    EXPECT_THAT(e.what(), HasSubstr("127.0.0.1:" + std::to_string(port)));
  }
  EXPECT_FALSE(client.connected());
}

TEST(ClientConnect, MisuseThrowsLogicError) {
  Client client;
  EXPECT_THROW(client.send(1001, {}), std::logic_error);
  EXPECT_THROW(client.send_raw(bytes({1})), std::logic_error);
  Connected c;
  EXPECT_THROW(c.client.connect("127.0.0.1", c.listener.port(), 1s), std::logic_error);
}

// ---------------------------------------------------------------- framing

TEST(ClientFraming, SendFramesSizeSeqProtoBodyWithSeqFromOne) {
  Connected c;
  ASSERT_TRUE(c.client.send(1001, text_bytes("abc")));
  ASSERT_TRUE(c.client.send(0, bytes({0, 0, 0, 7})));
  ASSERT_TRUE(c.client.send(1005));
  EXPECT_EQ(c.client.next_seq(), 4u);

  // size 9 = seq 4 + proto 2 + body 3; 1001 = 0x03e9
  EXPECT_EQ(c.server.read_exact(11), bytes({0x00, 0x09, 0, 0, 0, 1, 0x03, 0xe9, 'a', 'b', 'c'}));
  EXPECT_EQ(c.server.read_exact(12), bytes({0x00, 0x0a, 0, 0, 0, 2, 0, 0, 0, 0, 0, 7}));
  EXPECT_EQ(c.server.read_exact(8), bytes({0x00, 0x06, 0, 0, 0, 3, 0x03, 0xed}));
}

TEST(ClientFraming, NegativeProtoIsSentTwosComplement) {
  Connected c;
  ASSERT_TRUE(c.client.send(-2, {}));
  EXPECT_EQ(c.server.read_exact(8), bytes({0, 6, 0, 0, 0, 1, 0xff, 0xfe}));
}

TEST(ClientFraming, SendWithSeqSendsItAndStillCountsTheFrame) {
  Connected c;
  ASSERT_TRUE(c.client.send_with_seq(0x01020304, 1001, bytes({0xaa})));
  ASSERT_TRUE(c.client.send(1001, bytes({0xbb})));
  EXPECT_EQ(c.server.read_exact(9), bytes({0, 7, 1, 2, 3, 4, 0x03, 0xe9, 0xaa}));
  EXPECT_EQ(c.server.read_exact(9), bytes({0, 7, 0, 0, 0, 2, 0x03, 0xe9, 0xbb}));
}

TEST(ClientFraming, SendRawWritesBytesAsTheyAre) {
  Connected c;
  const Bytes junk = bytes({0xff, 0xff, 0x00, 0x01, 0x02});
  ASSERT_TRUE(c.client.send_raw(junk));
  EXPECT_EQ(c.server.read_exact(junk.size()), junk);
  EXPECT_EQ(c.client.next_seq(), 1u);  // not a frame
}

TEST(ClientFraming, SendPayloadFramesAnyPayloadAndCountsIt) {
  Connected c;
  ASSERT_TRUE(c.client.send_payload(bytes({1, 2, 3})));
  ASSERT_TRUE(c.client.send_payload({}));
  EXPECT_EQ(c.server.read_exact(5), bytes({0, 3, 1, 2, 3}));
  EXPECT_EQ(c.server.read_exact(2), bytes({0, 0}));
  EXPECT_EQ(c.client.next_seq(), 3u);
}

TEST(ClientFraming, LargestPayloadGoesOutAndALargerOneThrows) {
  Connected c;
  const Bytes body(65535 - 6, std::byte{0x5a});
  ServerThread server([&] {
    const ClientFrame f = c.server.read_frame();
    if (f.size != 65535 || f.seq != 1 || f.body != body) throw std::runtime_error("bad frame");
  });
  ASSERT_TRUE(c.client.send(1001, body));
  EXPECT_EQ(server.join(), "");
  const Bytes too_big(65535 - 5, std::byte{0});
  EXPECT_THROW(c.client.send(1001, too_big), std::length_error);
  EXPECT_EQ(c.client.next_seq(), 2u);
}

// ---------------------------------------------------------------- receiving

TEST(ClientReceive, ParsesFramesSplitAndCoalesced) {
  Connected c;
  Bytes wire = c.server.frame(1002, text_bytes("hello"));
  const Bytes second = c.server.frame(1004, bytes({0, 0, 0, 42, 0, 2, 'h', 'i'}));
  const Bytes third = c.server.frame(1, bytes({0, 0, 0, 9}));
  ServerThread server([&] {
    for (const std::byte b : wire) {  // one byte per segment
      c.server.write_raw(std::span(&b, 1));
      std::this_thread::sleep_for(1ms);
    }
    Bytes both = second;
    both.insert(both.end(), third.begin(), third.end());
    c.server.write_raw(both);  // two frames in one write
  });
  const auto p1 = c.client.receive(kPatience);
  ASSERT_TRUE(p1);
  EXPECT_EQ(p1->proto, 1002);
  EXPECT_EQ(p1->body, text_bytes("hello"));
  const auto p2 = c.client.receive(kPatience);
  ASSERT_TRUE(p2);
  EXPECT_EQ(p2->proto, 1004);
  const auto p3 = c.client.receive(kPatience);
  ASSERT_TRUE(p3);
  EXPECT_EQ(p3->proto, 1);
  EXPECT_EQ(p3->body, bytes({0, 0, 0, 9}));
  EXPECT_EQ(server.join(), "");
}

TEST(ClientReceive, EmptyBodyAndNegativeProto) {
  Connected c;
  c.server.write_raw(bytes({0, 2, 0xff, 0xff}));
  const auto p = c.client.receive(kPatience);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->proto, -1);
  EXPECT_TRUE(p->body.empty());
}

TEST(ClientReceive, TimesOutWithNulloptAndNotClosed) {
  Connected c;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.client.receive(150ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
  EXPECT_FALSE(c.client.closed());
  // A frame that is only partly there is not a packet yet.
  c.server.write_raw(bytes({0, 5, 0x03, 0xea}));
  EXPECT_FALSE(c.client.receive(100ms));
  EXPECT_FALSE(c.client.closed());
  c.server.write_raw(bytes({'x', 'y', 'z'}));
  const auto p = c.client.receive(kPatience);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->body, text_bytes("xyz"));
}

TEST(ClientReceive, ClosedConnectionIsReportedAfterTheLastPacket) {
  Connected c;
  c.server.write_packet(1002, text_bytes("last"));
  c.server.close();
  const auto p = c.client.receive(kPatience);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->body, text_bytes("last"));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.client.receive(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);  // not a timeout
  EXPECT_TRUE(c.client.closed());
  EXPECT_FALSE(c.client.close_error());  // clean EOF
  EXPECT_FALSE(c.client.receive(5s));    // stays closed, returns at once
}

TEST(ClientReceive, ResetIsReportedAsClosedWithTheError) {
  Connected c;
  c.server.reset();
  EXPECT_FALSE(c.client.receive(5s));
  EXPECT_TRUE(c.client.closed());
  EXPECT_EQ(c.client.close_error(), std::errc::connection_reset);
}

TEST(ClientReceive, ReceiveProtoLeavesOtherPacketsQueuedInOrder) {
  Connected c;
  c.server.write_packet(1004, bytes({0, 0, 0, 1, 0, 0}));
  c.server.write_packet(1006, {});
  c.server.write_packet(1002, text_bytes("x"));
  const auto ack = c.client.receive_proto(1002, kPatience);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body, text_bytes("x"));
  ASSERT_EQ(c.client.pending().size(), 2u);
  EXPECT_EQ(c.client.receive(0ms)->proto, 1004);
  EXPECT_EQ(c.client.receive(0ms)->proto, 1006);
  EXPECT_FALSE(c.client.receive_proto(1002, 50ms));
}

TEST(ClientReceive, WaitClosedKeepsThePacketsThatCameFirst) {
  Connected c;
  c.server.write_packet(1004, bytes({0, 0, 0, 1, 0, 1, 'a'}));
  c.server.write_packet(1004, bytes({0, 0, 0, 2, 0, 1, 'b'}));
  c.server.close();
  EXPECT_TRUE(c.client.wait_closed(5s));
  EXPECT_TRUE(c.client.closed());
  ASSERT_EQ(c.client.pending().size(), 2u);
  EXPECT_EQ(demo::parse_chat_message(c.client.receive(0ms)->body), (demo::ChatMessage{1, "a"}));
  EXPECT_EQ(demo::parse_chat_message(c.client.receive(0ms)->body), (demo::ChatMessage{2, "b"}));
  EXPECT_FALSE(c.client.receive(0ms));
}

TEST(ClientReceive, WaitClosedTimesOutWhileTheServerKeepsTheConnection) {
  Connected c;
  c.server.write_packet(1002, {});
  EXPECT_FALSE(c.client.wait_closed(150ms));
  EXPECT_FALSE(c.client.closed());
  EXPECT_EQ(c.client.pending().size(), 1u);
}

TEST(ClientReceive, MalformedFrameFromTheGatewayThrows) {
  Connected c;
  c.server.write_raw(bytes({0, 1, 0x42}));  // payload shorter than a proto
  EXPECT_THROW(c.client.receive(kPatience), ClientError);
}

TEST(ClientReceive, SendAfterResetReturnsFalseEventually) {
  Connected c;
  c.server.reset();
  ASSERT_TRUE(c.client.wait_closed(5s));
  bool all_sent = true;
  for (int k = 0; k < 10 && all_sent; ++k) all_sent = c.client.send(1001, text_bytes("x"));
  EXPECT_FALSE(all_sent);
}

TEST(ClientReceive, ShutdownSendGivesTheServerEofAndKeepsReceiving) {
  Connected c;
  c.client.shutdown_send();
  EXPECT_TRUE(c.server.eof());
  c.server.write_packet(1002, text_bytes("still"));
  const auto p = c.client.receive(kPatience);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->body, text_bytes("still"));
}

TEST(ClientMove, MovedClientKeepsTheSession) {
  Connected c;
  ASSERT_TRUE(c.client.send(1001, {}));
  Client moved = std::move(c.client);
  EXPECT_FALSE(c.client.connected());  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_TRUE(moved.connected());
  EXPECT_EQ(moved.next_seq(), 2u);
  ASSERT_TRUE(moved.send(1001, {}));
  EXPECT_EQ(c.server.read_exact(8), bytes({0, 6, 0, 0, 0, 1, 0x03, 0xe9}));
  EXPECT_EQ(c.server.read_exact(8), bytes({0, 6, 0, 0, 0, 2, 0x03, 0xe9}));
}

// ---------------------------------------------------------------- key exchange

constexpr std::uint64_t kServerX1 = 0x1234'5678'9abcULL;
constexpr std::uint64_t kServerX2 = 987'654'321ULL;

TEST(ClientKeyExchange, SeedsAreGToTheSecretsAndKeysMatchTheServers) {
  Connected c;
  testing::ServerKeys server_keys;
  ServerThread server(
      [&] { server_keys = testing::serve_key_exchange(c.server, kServerX1, kServerX2); });
  const std::uint64_t a = 1'000'003;
  const std::uint64_t b = 0x7fff'ffff'ffff'fff0ULL;
  const auto keys = c.client.key_exchange(a, b, kPatience);
  ASSERT_EQ(server.join(), "");
  ASSERT_TRUE(keys);
  EXPECT_TRUE(c.client.encrypted());
  EXPECT_EQ(c.client.keys(), keys);

  using testing::kReferenceGenerator;
  using testing::kReferencePrime;
  using testing::reference_power;
  EXPECT_EQ(static_cast<std::uint64_t>(server_keys.client_send_seed),
            reference_power(kReferenceGenerator, a, kReferencePrime));
  EXPECT_EQ(static_cast<std::uint64_t>(server_keys.client_receive_seed),
            reference_power(kReferenceGenerator, b, kReferencePrime));
  // By DH the gateway's key1 (which decrypts the client) is the client's send
  // key, and its key2 (which encrypts to the client) is the receive key.
  EXPECT_EQ(keys->send_key, server_keys.key1);
  EXPECT_EQ(keys->receive_key, server_keys.key2);
  EXPECT_EQ(keys->send_key,
            reference_power(reference_power(kReferenceGenerator, kServerX1, kReferencePrime), a,
                            kReferencePrime));
  EXPECT_EQ(c.client.next_seq(), 2u);  // get_seed_req was frame 1
}

TEST(ClientKeyExchange, BothDirectionsAreOneContinuousRc4StreamOverPayloadsOnly) {
  Connected c;
  testing::ServerKeys keys;
  ServerThread exchange(
      [&] { keys = testing::serve_key_exchange(c.server, kServerX1, kServerX2); });
  ASSERT_TRUE(c.client.key_exchange(kPatience));  // random secrets
  ASSERT_EQ(exchange.join(), "");

  // client -> gateway: the reference RC4 keyed "DH"+key1 decrypts every
  // frame in turn; size headers stay in clear, seq continues from 2.
  const std::vector<Bytes> bodies = {text_bytes("first"), {}, Bytes(300, std::byte{0x11})};
  for (const Bytes& body : bodies) ASSERT_TRUE(c.client.send(1001, body));
  ASSERT_TRUE(c.client.send_with_seq(77, 1003, text_bytes("q")));
  std::uint32_t seq = 2;
  for (const Bytes& body : bodies) {
    const ClientFrame f = c.server.read_frame();
    EXPECT_EQ(f.size, 6 + body.size());
    EXPECT_EQ(f.seq, seq++);
    EXPECT_EQ(f.proto, 1001);
    EXPECT_EQ(f.body, body);
    EXPECT_NE(Bytes(f.wire_payload.begin(), f.wire_payload.begin() + 6),
              Bytes({std::byte{0}, std::byte{0}, std::byte{0}, static_cast<std::byte>(f.seq),
                     std::byte{0x03}, std::byte{0xe9}}))
        << "payload went out in clear";
  }
  const ClientFrame q = c.server.read_frame();
  EXPECT_EQ(q.seq, 77u);
  EXPECT_EQ(q.proto, 1003);

  // gateway -> client: the reference RC4 keyed "DH"+key2 encrypts.
  c.server.write_packet(1002, text_bytes("pong"));
  c.server.write_packet(1004, bytes({0, 0, 0, 42, 0, 2, 'h', 'i'}));
  c.server.write_int32_packet(1, 5);
  const auto p1 = c.client.receive(kPatience);
  const auto p2 = c.client.receive(kPatience);
  const auto p3 = c.client.receive(kPatience);
  ASSERT_TRUE(p1 && p2 && p3);
  EXPECT_EQ(*p1, (Packet{1002, text_bytes("pong")}));
  EXPECT_EQ(demo::parse_chat_message(p2->body), (demo::ChatMessage{42, "hi"}));
  EXPECT_EQ(*p3, (Packet{1, bytes({0, 0, 0, 5})}));

  // And the high-level calls work over the encrypted session.
  ServerThread heartbeat([&] {
    const ClientFrame f = c.server.read_frame();
    if (f.proto != 0 || f.seq != 6) throw std::runtime_error("bad heartbeat frame");
    c.server.write_packet(1, f.body);
  });
  EXPECT_EQ(c.client.heartbeat(-7, kPatience), -7);
  EXPECT_EQ(heartbeat.join(), "");
}

TEST(ClientKeyExchange, AFrameRightBehindTheAckInTheSameWriteIsDecrypted) {
  Connected c;
  ServerThread server([&] {
    const ClientFrame req = c.server.read_frame();
    const auto send_seed = static_cast<std::int32_t>(testing::get_u32(req.body, 0));
    const auto receive_seed = static_cast<std::int32_t>(testing::get_u32(req.body, 4));
    Bytes ack;
    testing::put_u32(ack, static_cast<std::uint32_t>(testing::reference_dh(3, kServerX1)));
    testing::put_u32(ack, static_cast<std::uint32_t>(testing::reference_dh(3, kServerX2)));
    Bytes wire = c.server.frame(31, ack);  // clear
    c.server.decrypt_with(testing::reference_dh(send_seed, kServerX1));
    c.server.encrypt_with(testing::reference_dh(receive_seed, kServerX2));
    const Bytes push = c.server.frame(1004, bytes({0, 0, 0, 3, 0, 1, 'z'}));
    wire.insert(wire.end(), push.begin(), push.end());
    c.server.write_raw(wire);
  });
  ASSERT_TRUE(c.client.key_exchange(kPatience));
  ASSERT_EQ(server.join(), "");
  const auto push = c.client.receive(kPatience);
  ASSERT_TRUE(push);
  EXPECT_EQ(demo::parse_chat_message(push->body), (demo::ChatMessage{3, "z"}));
}

TEST(ClientKeyExchange, NegativeServerSeedsReduceModP) {
  // A gateway is not supposed to send them, but gonet2 reduced any int32.
  Connected c;
  std::int32_t send_seed = 0;
  ServerThread server([&] {
    const ClientFrame req = c.server.read_frame();
    send_seed = static_cast<std::int32_t>(testing::get_u32(req.body, 0));
    c.server.write_packet(31, bytes({0xff, 0xff, 0xff, 0xfe, 0x80, 0, 0, 0}));  // -2, INT32_MIN
  });
  const std::uint64_t a = 12345;
  const std::uint64_t b = 67891;
  const auto keys = c.client.key_exchange(a, b, kPatience);
  ASSERT_EQ(server.join(), "");
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->send_key, testing::reference_dh(-2, a));
  EXPECT_EQ(keys->receive_key, testing::reference_dh(INT32_MIN, b));
}

TEST(ClientKeyExchange, TimeoutAndCloseGiveNullopt) {
  {
    Connected c;
    EXPECT_FALSE(c.client.key_exchange(100ms));
    EXPECT_FALSE(c.client.closed());
    EXPECT_FALSE(c.client.encrypted());
    EXPECT_THROW(c.client.key_exchange(100ms), std::logic_error);  // still pending
  }
  {
    Connected c;
    c.server.close();
    EXPECT_FALSE(c.client.key_exchange(2s));
    EXPECT_TRUE(c.client.closed());
  }
}

// ---------------------------------------------------------------- heartbeat, login

TEST(ClientHeartbeat, SendsIdAndReturnsTheAckedId) {
  Connected c;
  ServerThread server([&] {
    const ClientFrame f = c.server.read_frame();
    if (f.seq != 1 || f.proto != 0 || f.body != bytes({0x12, 0x34, 0x56, 0x78})) {
      throw std::runtime_error("bad heart_beat_req");
    }
    c.server.write_packet(1004, bytes({0, 0, 0, 1, 0, 0}));  // a push first
    c.server.write_packet(1, f.body);
  });
  EXPECT_EQ(c.client.heartbeat(0x12345678, kPatience), 0x12345678);
  EXPECT_EQ(server.join(), "");
  EXPECT_EQ(c.client.pending().size(), 1u);  // the push is kept
}

TEST(ClientHeartbeat, NoAckIsNullopt) {
  Connected c;
  EXPECT_FALSE(c.client.heartbeat(1, 100ms));
}

/// user_login_req body, field by field per shared/protocol.md.
Bytes expected_login_body(std::string_view udid, std::string_view cert) {
  Bytes b;
  testing::put_i32(b, 0);  // login_way
  testing::put_string(b, udid);
  testing::put_string(b, cert);
  testing::put_i32(b, 1);  // client_version
  testing::put_string(b, "en");
  testing::put_string(b, "gatehouse-client");
  testing::put_string(b, "linux");
  testing::put_string(b, "gatehouse-client");
  testing::put_string(b, "gatehouse-client-device");
  testing::put_i32(b, 0);  // device_id_type
  testing::put_string(b, "127.0.0.1");
  return b;
}

TEST(ClientLogin, BodyLayoutIsByteExactAndUidIsReturned) {
  Connected c;
  Bytes body;
  ServerThread server([&] {
    const ClientFrame f = c.server.read_frame();
    if (f.proto != 10 || f.seq != 1) throw std::runtime_error("not a user_login_req");
    body = f.body;
    c.server.write_int32_packet(11, 42);
  });
  const LoginResult r = c.client.login("player-7", "secret-token", kPatience);
  ASSERT_EQ(server.join(), "");
  EXPECT_EQ(body, expected_login_body("player-7", "secret-token"));
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.uid(), 42);
}

TEST(ClientLogin, HandBuiltLayoutOfEveryField) {
  // Independent of make_login_request: every field distinct, in table order.
  protocol::LoginRequest req;
  req.login_way = 0x01020304;
  req.open_udid = "u";
  req.client_certificate = "cc";
  req.client_version = -1;
  req.user_lang = "zh";
  req.app_id = "app";
  req.os_version = "ios9";
  req.device_name = "dn";
  req.device_id = "did";
  req.device_id_type = 5;
  req.login_ip = "1.2.3.4";
  Connected c;
  Bytes body;
  ServerThread server([&] {
    body = c.server.read_frame().body;
    c.server.write_int32_packet(11, 1);
  });
  EXPECT_TRUE(c.client.login(req, kPatience).ok());
  ASSERT_EQ(server.join(), "");
  Bytes expected = bytes({1, 2, 3, 4});  // login_way int32
  const auto append = [&](std::initializer_list<unsigned> field) {
    const Bytes b = bytes(field);
    expected.insert(expected.end(), b.begin(), b.end());
  };
  append({0, 1, 'u'});                                // open_udid string
  append({0, 2, 'c', 'c'});                           // client_certificate string
  append({0xff, 0xff, 0xff, 0xff});                   // client_version int32
  append({0, 2, 'z', 'h'});                           // user_lang string
  append({0, 3, 'a', 'p', 'p'});                      // app_id string
  append({0, 4, 'i', 'o', 's', '9'});                 // os_version string
  append({0, 2, 'd', 'n'});                           // device_name string
  append({0, 3, 'd', 'i', 'd'});                      // device_id string
  append({0, 0, 0, 5});                               // device_id_type int32
  append({0, 7, '1', '.', '2', '.', '3', '.', '4'});  // login_ip string
  EXPECT_EQ(body, expected);
}

TEST(ClientLogin, RefusalCarriesTheCode) {
  Connected c;
  ServerThread server([&] {
    c.server.read_frame();
    c.server.write_int32_packet(12, 7);
    c.server.close();
  });
  const LoginResult r = c.client.login("nobody", "", kPatience);
  ASSERT_EQ(server.join(), "");
  EXPECT_EQ(r.status, LoginResult::Status::kRefused);
  EXPECT_EQ(r.value, 7);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.uid(), 0);
  EXPECT_TRUE(c.client.wait_closed(kPatience));
}

TEST(ClientLogin, CloseWithoutReplyAndTimeout) {
  {
    Connected c;
    ServerThread server([&] {
      c.server.read_frame();
      c.server.close();
    });
    EXPECT_EQ(c.client.login("x", "y", kPatience).status, LoginResult::Status::kClosed);
    EXPECT_EQ(server.join(), "");
  }
  {
    Connected c;
    EXPECT_EQ(c.client.login("x", "y", 100ms).status, LoginResult::Status::kTimeout);
  }
}

TEST(ClientLogin, WorksEncrypted) {
  Connected c;
  Bytes body;
  ServerThread server([&] {
    testing::serve_key_exchange(c.server, kServerX1, kServerX2);
    const ClientFrame f = c.server.read_frame();
    if (f.seq != 2 || f.proto != 10) throw std::runtime_error("bad encrypted login frame");
    body = f.body;
    c.server.write_int32_packet(11, 1234);
  });
  ASSERT_TRUE(c.client.key_exchange(kPatience));
  const LoginResult r = c.client.login("enc", "tok", kPatience);
  ASSERT_EQ(server.join(), "");
  EXPECT_EQ(body, expected_login_body("enc", "tok"));
  EXPECT_EQ(r.uid(), 1234);
}

// ---------------------------------------------------------------- demo protos and helpers

TEST(DemoProtocol, BodiesAreByteExact) {
  EXPECT_EQ(demo::encode_chat_say("hi"), bytes({0, 2, 'h', 'i'}));
  EXPECT_EQ(demo::encode_chat_say(""), bytes({0, 0}));
  EXPECT_EQ(demo::parse_chat_say(bytes({0, 2, 'h', 'i'})), "hi");
  EXPECT_FALSE(demo::parse_chat_say(bytes({0, 3, 'h', 'i'})));
  EXPECT_EQ(demo::encode_chat_message({42, "hi all"}),
            bytes({0, 0, 0, 42, 0, 6, 'h', 'i', ' ', 'a', 'l', 'l'}));
  EXPECT_EQ(demo::parse_chat_message(bytes({0xff, 0xff, 0xff, 0xff, 0, 1, '!'})),
            (demo::ChatMessage{-1, "!"}));
  EXPECT_FALSE(demo::parse_chat_message(bytes({0, 0, 0})));
  EXPECT_FALSE(demo::parse_chat_message(bytes({0, 0, 0, 1, 0, 5, 'x'})));
  EXPECT_EQ(to_bytes("ab"), bytes({'a', 'b'}));
  EXPECT_EQ(as_text(bytes({'o', 'k'})), "ok");
}

TEST(Describe, OneHumanLinePerPacket) {
  EXPECT_EQ(describe({1002, text_bytes("hello")}), "1002 proto_ping_ack \"hello\"");
  EXPECT_EQ(describe({1004, demo::encode_chat_message({42, "hi all"})}),
            "1004 chat uid=42 \"hi all\"");
  EXPECT_EQ(describe({11, bytes({0, 0, 0, 42})}), "11 login ok uid=42");
  EXPECT_EQ(describe({12, bytes({0, 0, 0, 3})}), "12 login failed code=3");
  EXPECT_EQ(describe({1, bytes({0, 0, 0, 9})}), "1 heart_beat_ack id=9");
  EXPECT_EQ(describe({31, bytes({0, 0, 0, 1, 0, 0, 0, 2})}),
            "31 get_seed_ack send_seed=1 receive_seed=2");
  EXPECT_EQ(describe({1003, demo::encode_chat_say("yo")}), "1003 chat_say \"yo\"");
  EXPECT_EQ(describe({1005, {}}), "1005 kick_me");
  EXPECT_EQ(describe({2000, bytes({1, 0xab})}), "2000 game (2 bytes) 01 ab");
  EXPECT_EQ(describe({1002, bytes({'a', '"', 0, 0xff})}),
            "1002 proto_ping_ack \"a\\\"\\x00\\xff\"");
  EXPECT_THAT(describe({11, bytes({1})}), HasSubstr("malformed"));
  EXPECT_EQ(to_string(LoginResult::Status::kRefused), "refused");
}

}  // namespace
}  // namespace gatehouse::client
