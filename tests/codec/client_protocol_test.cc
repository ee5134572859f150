// The client wire codec: framing edges and every body parser on short input.
#include "gatehouse/codec/client_protocol.h"

#include <gtest/gtest.h>

#include "gatehouse/codec/byte_io.h"

namespace gatehouse::protocol {
namespace {

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (const int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}

TEST(ScanFrame, NeedsTheWholeHeaderAndPayload) {
  EXPECT_EQ(scan_frame(bytes({}), 100).kind, FrameScan::kNeedMore);
  EXPECT_EQ(scan_frame(bytes({0x00}), 100).kind, FrameScan::kNeedMore);
  EXPECT_EQ(scan_frame(bytes({0x00, 0x03, 1, 2}), 100).kind, FrameScan::kNeedMore);
  const auto f = scan_frame(bytes({0x00, 0x03, 1, 2, 3, 9}), 100);
  EXPECT_EQ(f.kind, FrameScan::kFrame);
  EXPECT_EQ(f.payload_bytes, 3u);
  EXPECT_EQ(scan_frame(bytes({0x00, 0x00}), 100).kind, FrameScan::kFrame) << "empty payload";
}

TEST(ScanFrame, OversizeIsKnownFromTheHeaderAlone) {
  const auto f = scan_frame(bytes({0x01, 0x00}), 255);
  EXPECT_EQ(f.kind, FrameScan::kTooLarge);
  EXPECT_EQ(f.payload_bytes, 256u);
  EXPECT_EQ(scan_frame(bytes({0xFF, 0xFF}), kMaxPayload).kind, FrameScan::kNeedMore);
}

TEST(ClientPayload, SeqProtoBodyBigEndian) {
  const auto p = parse_client_payload(bytes({0, 0, 1, 2, 0x03, 0xE9, 'x'}));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->seq, 258u);
  EXPECT_EQ(p->proto, 1001);
  EXPECT_EQ(p->body.size(), 1u);
  EXPECT_FALSE(parse_client_payload(bytes({0, 0, 0, 1, 0})).has_value());
  const auto negative = parse_client_payload(bytes({0, 0, 0, 1, 0xFF, 0xFE}));
  ASSERT_TRUE(negative.has_value());
  EXPECT_EQ(negative->proto, -2);
}

TEST(Bodies, ShortBodiesAreRejectedTrailingBytesIgnored) {
  EXPECT_FALSE(parse_heartbeat(bytes({0, 0, 1})).has_value());
  EXPECT_EQ(parse_heartbeat(bytes({0, 0, 1, 0, 7})).value(), 256);
  EXPECT_FALSE(parse_seed(bytes({0, 0, 0, 1, 0, 0, 0})).has_value());
  const auto seed = parse_seed(bytes({0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 5}));
  ASSERT_TRUE(seed.has_value());
  EXPECT_EQ(seed->send_seed, -1);
  EXPECT_EQ(seed->receive_seed, 5);
}

TEST(Bodies, LoginRoundTripsAndEveryTruncationFails) {
  LoginRequest in;
  in.login_way = 3;
  in.open_udid = "device";
  in.client_certificate = "token";
  in.client_version = 9;
  in.user_lang = "fr";
  in.app_id = "game";
  in.os_version = "14";
  in.device_name = "phone";
  in.device_id = "id-1";
  in.device_id_type = 2;
  in.login_ip = "10.1.2.3";
  std::vector<std::byte> body;
  encode_login(in, body);
  const auto out = parse_login(body);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->open_udid, "device");
  EXPECT_EQ(out->client_certificate, "token");
  EXPECT_EQ(out->login_ip, "10.1.2.3");
  EXPECT_EQ(out->device_id_type, 2);
  for (std::size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(parse_login(std::span(body).first(n)).has_value()) << "truncated at " << n;
  }
}

TEST(Encoders, RepliesAreBigEndian) {
  std::vector<std::byte> out;
  encode_int32_packet(kHeartBeatAck, 0x01020304, out);
  EXPECT_EQ(out, bytes({0x00, 0x01, 1, 2, 3, 4}));
  out.clear();
  encode_seed_packet(kGetSeedAck, {0x7FFFFFC2, 3}, out);
  EXPECT_EQ(out, bytes({0x00, 0x1F, 0x7F, 0xFF, 0xFF, 0xC2, 0, 0, 0, 3}));
}

}  // namespace
}  // namespace gatehouse::protocol
