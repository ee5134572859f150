// The KCP connection (common/kcp): the wire format byte for byte, every
// malformed datagram refused without effect, and two connections over a
// simulated link (seeded: loss, reordering, duplication, delay) delivering
// a byte stream exactly once and in order; fast resend, the windows, the
// send buffer bound, window probing, a dead link, and the clock wrapping.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "gatehouse/kcp/connection.h"
#include "gatehouse/kcp/segment.h"

namespace gatehouse::kcp {
namespace {

using Bytes = std::vector<std::byte>;

Bytes segment(const SegmentHeader& h, const Bytes& payload = {}) {
  Bytes out(kHeaderBytes);
  encode_header(h, std::span<std::byte, kHeaderBytes>(out.data(), kHeaderBytes));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes pattern(std::size_t size, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes out(size);
  for (std::byte& b : out) b = static_cast<std::byte>(rng());
  return out;
}

SegmentHeader push(std::uint32_t conv, std::uint32_t sn, std::uint32_t len) {
  SegmentHeader h;
  h.conv = conv;
  h.cmd = Command::kPush;
  h.wnd = 32;
  h.sn = sn;
  h.len = len;
  return h;
}

/// Every segment of a datagram our connection sent (which is well formed).
std::vector<SegmentHeader> segments_of(std::span<const std::byte> datagram) {
  std::vector<SegmentHeader> out;
  while (!datagram.empty()) {
    const auto h = decode_header(datagram);
    EXPECT_TRUE(h.has_value());
    if (!h) break;
    out.push_back(*h);
    datagram = datagram.subspan(kHeaderBytes + h->len);
  }
  return out;
}

// ----------------------------------------------------------------- wire

TEST(KcpWire, HeaderIsLittleEndianInTheDocumentedOrder) {
  SegmentHeader h;
  h.conv = 0x04030201;
  h.cmd = Command::kAck;
  h.frg = 0x05;
  h.wnd = 0x0706;
  h.ts = 0x0B0A0908;
  h.sn = 0x0F0E0D0C;
  h.una = 0x13121110;
  h.len = 0x17161514;
  const Bytes b = segment(h);
  const Bytes want = {std::byte{1},    std::byte{2},    std::byte{3},    std::byte{4},
                      std::byte{82},   std::byte{5},    std::byte{6},    std::byte{7},
                      std::byte{8},    std::byte{9},    std::byte{0x0A}, std::byte{0x0B},
                      std::byte{0x0C}, std::byte{0x0D}, std::byte{0x0E}, std::byte{0x0F},
                      std::byte{0x10}, std::byte{0x11}, std::byte{0x12}, std::byte{0x13},
                      std::byte{0x14}, std::byte{0x15}, std::byte{0x16}, std::byte{0x17}};
  EXPECT_EQ(b, want);
  const auto back = decode_header(b);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->conv, h.conv);
  EXPECT_EQ(back->cmd, h.cmd);
  EXPECT_EQ(back->frg, h.frg);
  EXPECT_EQ(back->wnd, h.wnd);
  EXPECT_EQ(back->ts, h.ts);
  EXPECT_EQ(back->sn, h.sn);
  EXPECT_EQ(back->una, h.una);
  EXPECT_EQ(back->len, h.len);
  EXPECT_FALSE(decode_header(std::span<const std::byte>(b).first(23)).has_value());
}

TEST(KcpWire, PeekConvNeedsAWholeHeader) {
  const Bytes b = segment(push(0xDEADBEEF, 0, 0));
  EXPECT_EQ(peek_conv(b), 0xDEADBEEFu);
  EXPECT_FALSE(peek_conv(std::span<const std::byte>(b).first(23)).has_value());
  EXPECT_FALSE(peek_conv({}).has_value());
}

TEST(KcpWire, ValidateNamesEachStructuralFault) {
  constexpr std::uint32_t kConv = 7;
  const Bytes ok = segment(push(kConv, 0, 3), {std::byte{1}, std::byte{2}, std::byte{3}});
  EXPECT_EQ(validate_datagram(ok, kConv), InputStatus::kAccepted);
  EXPECT_EQ(validate_datagram(concat({ok, ok}), kConv), InputStatus::kAccepted);

  EXPECT_EQ(validate_datagram({}, kConv), InputStatus::kTruncated);
  EXPECT_EQ(validate_datagram(std::span<const std::byte>(ok).first(23), kConv),
            InputStatus::kTruncated);
  EXPECT_EQ(validate_datagram(concat({ok, Bytes(5)}), kConv), InputStatus::kTruncated)
      << "trailing bytes after a segment";
  EXPECT_EQ(validate_datagram(ok, kConv + 1), InputStatus::kWrongConv);
  EXPECT_EQ(validate_datagram(concat({ok, segment(push(kConv + 1, 1, 0))}), kConv),
            InputStatus::kWrongConv)
      << "a second segment of another conv";
  for (const int cmd : {0, 80, 85, 255}) {
    SegmentHeader h = push(kConv, 0, 0);
    h.cmd = static_cast<Command>(cmd);
    EXPECT_EQ(validate_datagram(segment(h), kConv), InputStatus::kUnknownCommand) << cmd;
  }
  EXPECT_EQ(validate_datagram(segment(push(kConv, 0, 4), Bytes(3)), kConv),
            InputStatus::kLengthBeyondData);
  EXPECT_EQ(validate_datagram(segment(push(kConv, 0, 0xFFFFFFFF)), kConv),
            InputStatus::kPayloadTooLarge);
  EXPECT_EQ(
      validate_datagram(
          segment(push(kConv, 0, kMaxSegmentPayload + 1), Bytes(kMaxSegmentPayload + 1)), kConv),
      InputStatus::kPayloadTooLarge);
  EXPECT_EQ(validate_datagram(
                segment(push(kConv, 0, kMaxSegmentPayload), Bytes(kMaxSegmentPayload)), kConv),
            InputStatus::kAccepted);
  SegmentHeader fragment = push(kConv, 0, 1);
  fragment.frg = 1;
  EXPECT_EQ(validate_datagram(segment(fragment, Bytes(1)), kConv), InputStatus::kFragmented);
  for (const Command cmd : {Command::kAck, Command::kWindowAsk, Command::kWindowTell}) {
    SegmentHeader h = push(kConv, 0, 1);
    h.cmd = cmd;
    EXPECT_EQ(validate_datagram(segment(h, Bytes(1)), kConv), InputStatus::kPayloadOnControl);
  }
}

TEST(KcpWire, SessionOpenerIsAFreshClientsFirstPush) {
  constexpr std::uint32_t kConv = 0x12345678;
  const Bytes data(10);
  EXPECT_TRUE(is_session_opener(segment(push(kConv, 0, 10), data)));
  EXPECT_TRUE(is_session_opener(
      concat({segment(push(kConv, 0, 10), data), segment(push(kConv, 1, 10), data)})))
      << "kcp-go packs the first segments into one datagram";

  EXPECT_FALSE(is_session_opener(segment(push(kConv, 1, 10), data))) << "mid-conversation";
  SegmentHeader una = push(kConv, 0, 10);
  una.una = 5;
  EXPECT_FALSE(is_session_opener(segment(una, data))) << "it has received something";
  EXPECT_FALSE(is_session_opener(segment(push(kConv, 0, 0)))) << "no data";
  SegmentHeader ack = push(kConv, 0, 0);
  ack.cmd = Command::kAck;
  EXPECT_FALSE(is_session_opener(segment(ack)));
  SegmentHeader ask = push(kConv, 0, 0);
  ask.cmd = Command::kWindowAsk;
  EXPECT_FALSE(is_session_opener(segment(ask)));
  EXPECT_FALSE(is_session_opener(concat({segment(push(kConv, 0, 10), data), Bytes(3)})))
      << "malformed after the first segment";
  EXPECT_FALSE(is_session_opener(
      concat({segment(push(kConv, 0, 10), data), segment(push(kConv + 1, 1, 10), data)})));
  EXPECT_FALSE(is_session_opener({}));

  // Random datagrams essentially never pass (a push with sn 0, una 0, frg 0
  // and an exact length is 2^-100 or so).
  std::mt19937 rng(1);
  int passed = 0;
  for (int i = 0; i < 100000; ++i) {
    const Bytes junk = pattern(24 + rng() % 100, static_cast<std::uint32_t>(i));
    passed += is_session_opener(junk) ? 1 : 0;
  }
  EXPECT_EQ(passed, 0);
}

TEST(KcpOptions, DefaultsAreGonet2sAndBadOnesThrow) {
  const Options o;
  EXPECT_EQ(o.send_window, 32u);
  EXPECT_EQ(o.receive_window, 32u);
  EXPECT_EQ(o.mtu, 1280u);
  EXPECT_TRUE(o.nodelay);
  EXPECT_EQ(o.interval, 20u);
  EXPECT_EQ(o.fast_resend, 1u);
  EXPECT_TRUE(Connection::validate(o).empty());

  auto bad = [](auto change) {
    Options x;
    change(x);
    EXPECT_FALSE(Connection::validate(x).empty());
    EXPECT_THROW(Connection(1, x, [](std::span<const std::byte>) {}), std::invalid_argument);
  };
  bad([](Options& x) { x.send_window = 0; });
  bad([](Options& x) { x.receive_window = 0; });
  bad([](Options& x) { x.receive_window = kMaxWindow + 1; });
  bad([](Options& x) { x.mtu = 49; });
  bad([](Options& x) { x.mtu = 1501; });
  bad([](Options& x) { x.interval = 5; });
  bad([](Options& x) { x.send_buffer_bytes = 0; });
  bad([](Options& x) { x.dead_link = 0; });
  EXPECT_THROW(Connection(1, o, nullptr), std::invalid_argument);
}

// ----------------------------------------------------------------- one connection

/// A connection whose output is recorded.
struct Recorder {
  explicit Recorder(std::uint32_t conv, Options options = {})
      : conn(conv, options,
             [this](std::span<const std::byte> d) { sent.emplace_back(d.begin(), d.end()); }) {}
  std::vector<Bytes> sent;
  Connection conn;
};

TEST(KcpInput, MalformedDatagramsChangeNothing) {
  constexpr std::uint32_t kConv = 99;
  Recorder r(kConv);
  const Bytes data = pattern(100, 1);

  SegmentHeader ack = push(kConv, 0, 0);
  ack.cmd = Command::kAck;
  SegmentHeader far_una = push(kConv, 0, 100);
  far_una.una = 1;  // we have sent nothing
  SegmentHeader frg = push(kConv, 0, 100);
  frg.frg = 2;
  const std::vector<std::pair<Bytes, InputStatus>> cases = {
      {{}, InputStatus::kTruncated},
      {Bytes(10), InputStatus::kTruncated},
      {segment(push(kConv + 1, 0, 100), data), InputStatus::kWrongConv},
      {segment(push(kConv, 0, 101), data), InputStatus::kLengthBeyondData},
      {segment(frg, data), InputStatus::kFragmented},
      {segment(ack), InputStatus::kAckBeyondSent},
      {segment(far_una, data), InputStatus::kUnaBeyondSent},
      // A good segment first does not let the bad one after it in, nor itself.
      {concat({segment(push(kConv, 0, 100), data), segment(ack)}), InputStatus::kAckBeyondSent},
      {concat({segment(push(kConv, 0, 100), data), Bytes(1)}), InputStatus::kTruncated},
  };
  std::uint64_t refused = 0;
  for (const auto& [datagram, status] : cases) {
    EXPECT_EQ(r.conn.input(datagram, 0), status) << name_of(status);
    EXPECT_EQ(r.conn.stats().datagrams_refused, ++refused);
  }
  r.conn.update(0);
  r.conn.flush(1);
  EXPECT_TRUE(r.sent.empty()) << "nothing acknowledged";
  EXPECT_EQ(r.conn.readable(), 0u);
  EXPECT_EQ(r.conn.stats().segments_in, 0u);

  // And the good segment alone is taken.
  EXPECT_EQ(r.conn.input(segment(push(kConv, 0, 100), data), 2), InputStatus::kAccepted);
  EXPECT_EQ(r.conn.readable(), 100u);
}

TEST(KcpInput, StatusesHaveNames) {
  EXPECT_EQ(name_of(InputStatus::kAccepted), "accepted");
  EXPECT_EQ(name_of(InputStatus::kWrongConv), "wrong conv");
  EXPECT_EQ(name_of(static_cast<InputStatus>(200)), "unknown status");
}

TEST(KcpInput, OutOfWindowIsDroppedUnackedAndDuplicatesAreDeliveredOnce) {
  constexpr std::uint32_t kConv = 5;
  Recorder r(kConv);
  const Bytes a = pattern(10, 1);
  const Bytes b = pattern(10, 2);
  ASSERT_EQ(r.conn.input(segment(push(kConv, 32, 10), a), 0), InputStatus::kAccepted);
  EXPECT_EQ(r.conn.stats().outside_window, 1u);
  ASSERT_EQ(r.conn.input(segment(push(kConv, 0xFFFFFFFF, 10), a), 0), InputStatus::kAccepted);
  EXPECT_EQ(r.conn.stats().duplicate_segments, 1u) << "below rcv_nxt: old, acked again";

  ASSERT_EQ(r.conn.input(segment(push(kConv, 1, 10), b), 0), InputStatus::kAccepted);
  ASSERT_EQ(r.conn.input(segment(push(kConv, 1, 10), b), 0), InputStatus::kAccepted);
  EXPECT_EQ(r.conn.readable(), 0u) << "sn 1 waits for sn 0";
  ASSERT_EQ(r.conn.input(segment(push(kConv, 0, 10), a), 0), InputStatus::kAccepted);
  ASSERT_EQ(r.conn.input(segment(push(kConv, 0, 10), a), 0), InputStatus::kAccepted);
  EXPECT_EQ(r.conn.stats().duplicate_segments, 3u);
  ASSERT_EQ(r.conn.readable(), 20u);
  Bytes got(64);
  got.resize(r.conn.receive(got));
  EXPECT_EQ(got, concat({a, b}));

  r.conn.flush(1);
  std::multiset<std::uint32_t> acked;
  for (const Bytes& d : r.sent) {
    for (const SegmentHeader& h : segments_of(d)) {
      EXPECT_EQ(h.cmd, Command::kAck);
      EXPECT_EQ(h.una, 2u);
      acked.insert(h.sn);
    }
  }
  EXPECT_EQ(acked, (std::multiset<std::uint32_t>{0xFFFFFFFF, 0, 0, 1, 1}))
      << "sn 32 was beyond the window";
}

TEST(KcpInput, AcksOwedAreBoundedByOneDatagram) {
  constexpr std::uint32_t kConv = 5;
  Recorder r(kConv);
  const Bytes a = pattern(1, 1);
  // A flood of duplicates, never an update(): the acks go out a datagram's
  // worth at a time instead of piling up.
  for (int i = 0; i < 10000; ++i) {
    ASSERT_EQ(r.conn.input(segment(push(kConv, 0, 1), a), 0), InputStatus::kAccepted);
  }
  const std::size_t per_datagram = Options{}.mtu / kHeaderBytes;
  EXPECT_EQ(r.sent.size(), 10000 / per_datagram);
  for (const Bytes& d : r.sent) EXPECT_LE(d.size(), Options{}.mtu);
}

TEST(KcpInput, ReceiveMemoryIsBoundedByTheWindow) {
  constexpr std::uint32_t kConv = 5;
  Recorder r(kConv);
  const Bytes big = pattern(kMaxSegmentPayload, 3);
  // In order, never read: the receive queue holds 32 segments, the slots 32
  // more, and everything after is outside the window.
  for (std::uint32_t sn = 0; sn < 1000; ++sn) {
    ASSERT_EQ(r.conn.input(segment(push(kConv, sn, kMaxSegmentPayload), big), 0),
              InputStatus::kAccepted);
  }
  EXPECT_EQ(r.conn.readable(), 32 * kMaxSegmentPayload);
  EXPECT_EQ(r.conn.stats().outside_window, 1000u - 64);
  r.conn.flush(0);
  // The last ack says: window 0.
  const auto last = segments_of(r.sent.back()).back();
  EXPECT_EQ(last.wnd, 0);
  EXPECT_EQ(last.una, 32u);
}

TEST(KcpSend, StreamModeCoalescesAndTheBufferIsBounded) {
  Options o;
  o.send_buffer_bytes = 10000;
  Recorder r(1, o);
  const std::size_t mss = o.mtu - kHeaderBytes;
  const Bytes chunk = pattern(100, 4);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(r.conn.send(chunk), Connection::SendStatus::kQueued);
  }
  EXPECT_EQ(r.conn.send_capacity(), 0u);
  EXPECT_EQ(r.conn.send(pattern(1, 5)), Connection::SendStatus::kFull);
  EXPECT_EQ(r.conn.send({}), Connection::SendStatus::kQueued);
  r.conn.flush(0);
  std::size_t pushes = 0;
  std::size_t bytes = 0;
  for (const Bytes& d : r.sent) {
    EXPECT_LE(d.size(), o.mtu);
    for (const SegmentHeader& h : segments_of(d)) {
      EXPECT_EQ(h.cmd, Command::kPush);
      EXPECT_EQ(h.frg, 0);
      EXPECT_EQ(h.sn, pushes++);
      bytes += h.len;
    }
  }
  EXPECT_EQ(bytes, 10000u);
  EXPECT_EQ(pushes, (10000 + mss - 1) / mss) << "100-byte writes packed into full segments";
  EXPECT_EQ(r.conn.in_flight(), pushes);
  EXPECT_EQ(r.conn.unacknowledged_bytes(), 10000u);

  // An ack of everything frees the buffer.
  SegmentHeader ack = push(1, 0, 0);
  ack.cmd = Command::kWindowTell;
  ack.una = static_cast<std::uint32_t>(pushes);
  ASSERT_EQ(r.conn.input(segment(ack), 10), InputStatus::kAccepted);
  EXPECT_EQ(r.conn.in_flight(), 0u);
  EXPECT_EQ(r.conn.send_capacity(), 10000u);
}

TEST(KcpSend, FirstDatagramIsASessionOpener) {
  Recorder r(0xCAFE);
  ASSERT_EQ(r.conn.send(pattern(3000, 1)), Connection::SendStatus::kQueued);
  r.conn.update(1000);
  ASSERT_FALSE(r.sent.empty());
  EXPECT_TRUE(is_session_opener(r.sent.front()));
  EXPECT_EQ(peek_conv(r.sent.front()), 0xCAFEu);
}

TEST(KcpSend, CheckNamesTheNextFlushOrADueResend) {
  Recorder r(1);
  EXPECT_EQ(r.conn.check(500), 500u) << "never updated: now";
  r.conn.update(1000);
  EXPECT_EQ(r.conn.check(1000), 1020u) << "the next interval";
  EXPECT_EQ(r.conn.check(1005), 1020u);
  ASSERT_EQ(r.conn.send(pattern(10, 1)), Connection::SendStatus::kQueued);
  r.conn.flush(1010);  // sent at 1010, resend due at 1210 (initial RTO 200)
  ASSERT_EQ(r.sent.size(), 1u);
  EXPECT_EQ(r.conn.check(1011), 1020u);
  r.conn.update(1020);
  r.conn.update(1200);
  EXPECT_EQ(r.conn.check(1200), 1210u) << "the resend comes before the next interval";
  EXPECT_EQ(r.conn.check(1210), 1210u);
  r.conn.update(1210);
  EXPECT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.conn.stats().timeout_resends, 1u);
  EXPECT_EQ(r.conn.check(20000), 20000u) << "a clock jump: now";
}

TEST(KcpSend, AWindowAskIsAnsweredWithTheFreeWindow) {
  constexpr std::uint32_t kConv = 3;
  Recorder r(kConv);
  SegmentHeader ask = push(kConv, 0, 0);
  ask.cmd = Command::kWindowAsk;
  ASSERT_EQ(r.conn.input(segment(ask), 0), InputStatus::kAccepted);
  r.conn.flush(0);
  ASSERT_EQ(r.sent.size(), 1u);
  const auto tell = segments_of(r.sent[0]);
  ASSERT_EQ(tell.size(), 1u);
  EXPECT_EQ(tell[0].cmd, Command::kWindowTell);
  EXPECT_EQ(tell[0].wnd, 32);
  EXPECT_EQ(tell[0].len, 0u);
}

// ask_window(): a probe without data, for an owner checking that its peer
// still keeps the conversation; the peer's answer is a window tell.
TEST(KcpSend, AskWindowSendsAProbeTheOtherSideAnswers) {
  constexpr std::uint32_t kConv = 4;
  Recorder client(kConv);
  Recorder server(kConv);
  client.conn.flush(0);
  EXPECT_TRUE(client.sent.empty()) << "nothing to say without the ask";
  client.conn.ask_window();
  client.conn.flush(0);
  ASSERT_EQ(client.sent.size(), 1u);
  const auto ask = segments_of(client.sent[0]);
  ASSERT_EQ(ask.size(), 1u);
  EXPECT_EQ(ask[0].cmd, Command::kWindowAsk);
  EXPECT_EQ(ask[0].len, 0u);
  client.conn.flush(0);
  EXPECT_EQ(client.sent.size(), 1u) << "one probe per ask";

  ASSERT_EQ(server.conn.input(client.sent[0], 0), InputStatus::kAccepted);
  server.conn.update(0);
  ASSERT_EQ(server.sent.size(), 1u);
  EXPECT_EQ(segments_of(server.sent[0]).at(0).cmd, Command::kWindowTell);
  EXPECT_EQ(client.conn.input(server.sent[0], 0), InputStatus::kAccepted);
}

TEST(KcpSend, DeadLinkAfterTheTransmissionLimit) {
  Options o;
  o.dead_link = 5;
  Recorder r(1, o);
  ASSERT_EQ(r.conn.send(pattern(10, 1)), Connection::SendStatus::kQueued);
  Millis now = 0;
  while (!r.conn.dead() && now < 600000) {
    r.conn.update(now);
    now = std::max(r.conn.check(now), now + 1);
  }
  EXPECT_TRUE(r.conn.dead());
  EXPECT_EQ(r.sent.size(), 5u);
  EXPECT_EQ(r.conn.stats().timeout_resends, 4u);
}

// ----------------------------------------------------------------- two connections

/// One direction of a simulated UDP path.
struct Path {
  double loss = 0;
  double duplicate = 0;
  Millis delay = 10;
  Millis jitter = 0;  ///< uniform extra delay: reorders datagrams
  /// Decides, per datagram, whether to drop it regardless of `loss`.
  std::function<bool(std::span<const std::byte>)> drop_if;

  struct InFlight {
    Millis at;
    std::uint64_t order;
    Bytes bytes;
  };
  std::vector<InFlight> queue;
  std::uint64_t next_order = 0;
  std::uint64_t carried = 0;
};

class Sim {
 public:
  Sim(std::uint32_t seed, Options options, Millis start = 0)
      : rng_(seed),
        now_(start),
        a_(kConv, options, [this](std::span<const std::byte> d) { carry(ab, d); }),
        b_(kConv, options, [this](std::span<const std::byte> d) { carry(ba, d); }) {}

  static constexpr std::uint32_t kConv = 0x1234ABCD;
  Path ab;  ///< a -> b
  Path ba;  ///< b -> a

  Connection& a() { return a_; }
  Connection& b() { return b_; }
  Millis now() const { return now_; }

  /// Runs a -> b (and b -> a when `both`): `out_a` to send from a, `out_b`
  /// from b, until each side read everything or `limit` ms passed. Writes as
  /// fast as send() accepts, reads in random sizes, flushes after writes.
  /// A second call with the same bytes carries on where the first stopped;
  /// restart() first to send new ones.
  bool transfer(const Bytes& out_a, const Bytes& out_b, Millis limit) {
    const Millis end = now_ + limit;
    while (static_cast<std::int32_t>(now_ - end) < 0) {
      deliver(ab, b_);
      deliver(ba, a_);
      write(a_, out_a, sent_a_);
      write(b_, out_b, sent_b_);
      read(b_, got_b);
      read(a_, got_a);
      if (static_cast<std::int32_t>(a_.check(now_) - now_) <= 0) a_.update(now_);
      if (static_cast<std::int32_t>(b_.check(now_) - now_) <= 0) b_.update(now_);
      EXPECT_LE(a_.in_flight(), 32u);
      EXPECT_LE(b_.in_flight(), 32u);
      if (got_b.size() == out_a.size() && got_a.size() == out_b.size() &&
          a_.unacknowledged_bytes() == 0 && b_.unacknowledged_bytes() == 0) {
        return true;
      }
      ++now_;
    }
    return false;
  }

  void run_for(Millis ms) {
    const Millis end = now_ + ms;
    while (static_cast<std::int32_t>(now_ - end) < 0) {
      deliver(ab, b_);
      deliver(ba, a_);
      if (static_cast<std::int32_t>(a_.check(now_) - now_) <= 0) a_.update(now_);
      if (static_cast<std::int32_t>(b_.check(now_) - now_) <= 0) b_.update(now_);
      ++now_;
    }
  }

  void restart() {
    sent_a_ = 0;
    sent_b_ = 0;
    got_a.clear();
    got_b.clear();
  }

  Bytes got_a;  ///< what a read
  Bytes got_b;  ///< what b read
  bool read_b = true;

 private:
  void carry(Path& path, std::span<const std::byte> d) {
    EXPECT_LE(d.size(), 1280u);
    if (path.drop_if && path.drop_if(d)) return;
    std::uniform_real_distribution<double> coin(0, 1);
    if (coin(rng_) < path.loss) return;
    const int copies = coin(rng_) < path.duplicate ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      const Millis extra = path.jitter == 0 ? 0 : static_cast<Millis>(rng_() % (path.jitter + 1));
      path.queue.push_back(
          {now_ + path.delay + extra, path.next_order++, Bytes(d.begin(), d.end())});
    }
  }

  void deliver(Path& path, Connection& to) {
    std::vector<Path::InFlight> due;
    auto it = std::partition(path.queue.begin(), path.queue.end(), [this](const Path::InFlight& p) {
      return static_cast<std::int32_t>(p.at - now_) > 0;
    });
    due.assign(std::make_move_iterator(it), std::make_move_iterator(path.queue.end()));
    path.queue.erase(it, path.queue.end());
    std::sort(due.begin(), due.end(), [](const auto& x, const auto& y) {
      return x.at != y.at ? static_cast<std::int32_t>(x.at - y.at) < 0 : x.order < y.order;
    });
    for (const auto& p : due) {
      ++path.carried;
      EXPECT_EQ(to.input(p.bytes, now_), InputStatus::kAccepted);
    }
  }

  void write(Connection& c, const Bytes& out, std::size_t& sent) {
    if (sent == out.size()) return;
    // Writes of 1..3000 bytes, as a game's messages would come.
    const std::size_t want = std::min<std::size_t>(out.size() - sent, 1 + rng_() % 3000);
    if (c.send(std::span<const std::byte>(out).subspan(sent, want)) ==
        Connection::SendStatus::kQueued) {
      sent += want;
      c.flush(now_);
    }
  }

  void read(Connection& c, Bytes& got) {
    if (&c == &b_ && !read_b) return;
    while (c.readable() > 0) {
      Bytes buf(1 + rng_() % 2000);
      const std::size_t n = c.receive(buf);
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }

  std::mt19937 rng_;
  Millis now_;
  std::size_t sent_a_ = 0;
  std::size_t sent_b_ = 0;
  Connection a_;
  Connection b_;
};

TEST(KcpLink, CleanLinkNeedsNoResends) {
  Sim sim(1, Options{});
  const Bytes data = pattern(200000, 10);
  ASSERT_TRUE(sim.transfer(data, {}, 60000));
  EXPECT_EQ(sim.got_b, data);
  EXPECT_EQ(sim.a().stats().timeout_resends, 0u);
  EXPECT_EQ(sim.a().stats().fast_resends, 0u);
  EXPECT_EQ(sim.b().stats().duplicate_segments, 0u);
  EXPECT_FALSE(sim.a().dead());
  // RTT 20 ms plus up to an interval of delayed ack: the RTO stays small.
  EXPECT_LE(sim.a().rto(), 200u);
  EXPECT_GE(sim.a().rto(), 30u);
}

struct Lossy {
  double loss;
  double duplicate;
  Millis jitter;
};

class KcpLossyLink : public ::testing::TestWithParam<std::tuple<std::uint32_t, Lossy>> {};

TEST_P(KcpLossyLink, BothWaysExactlyOnceInOrder) {
  const auto [seed, shape] = GetParam();
  Sim sim(seed, Options{});
  for (Path* p : {&sim.ab, &sim.ba}) {
    p->loss = shape.loss;
    p->duplicate = shape.duplicate;
    p->jitter = shape.jitter;
  }
  const Bytes ab = pattern(300000, seed);
  const Bytes ba = pattern(150000, seed + 1000);
  ASSERT_TRUE(sim.transfer(ab, ba, 600000)) << "b read " << sim.got_b.size() << "/" << ab.size()
                                            << ", a read " << sim.got_a.size() << "/" << ba.size();
  EXPECT_EQ(sim.got_b, ab);
  EXPECT_EQ(sim.got_a, ba);
  if (shape.loss > 0) {
    EXPECT_GT(sim.a().stats().timeout_resends + sim.a().stats().fast_resends, 0u);
  }
  if (shape.duplicate > 0) {
    EXPECT_GT(sim.b().stats().duplicate_segments, 0u);
  }
  EXPECT_FALSE(sim.a().dead());
  EXPECT_FALSE(sim.b().dead());
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, KcpLossyLink,
    ::testing::Combine(::testing::Values(1u, 2u, 3u, 4u),
                       ::testing::Values(Lossy{0.1, 0.05, 40}, Lossy{0.3, 0.0, 5},
                                         Lossy{0.0, 0.3, 80}, Lossy{0.05, 0.05, 200})));

TEST(KcpLink, FastResendBeatsTheTimeout) {
  Sim sim(7, Options{});
  sim.ab.delay = 50;  // RTT 100 ms: the RTO is well above it
  sim.ba.delay = 50;
  // Settle the RTT with a first exchange (writes are flushed as they come,
  // so how many segments it takes varies).
  std::uint32_t next_sn = 0;
  sim.ab.drop_if = [&](std::span<const std::byte> d) {
    for (const SegmentHeader& h : segments_of(d)) {
      if (h.cmd == Command::kPush) next_sn = std::max(next_sn, h.sn + 1);
    }
    return false;
  };
  ASSERT_TRUE(sim.transfer(pattern(5000, 1), {}, 10000));
  // Then lose the first transmission of one segment in the middle.
  const std::uint32_t victim = next_sn + 5;
  bool dropped = false;
  sim.ab.drop_if = [&](std::span<const std::byte> d) {
    for (const SegmentHeader& h : segments_of(d)) {
      if (h.cmd == Command::kPush && h.sn == victim && !dropped) {
        dropped = true;
        return true;
      }
    }
    return false;
  };
  sim.restart();
  const Bytes data = pattern(std::size_t{20} * 1256, 2);
  ASSERT_TRUE(sim.transfer(data, {}, 10000));
  EXPECT_TRUE(dropped);
  EXPECT_EQ(sim.got_b, data);
  EXPECT_GE(sim.a().stats().fast_resends, 1u);
  EXPECT_EQ(sim.a().stats().timeout_resends, 0u);
}

TEST(KcpLink, SendWindowBoundsWhatIsInFlight) {
  Sim sim(3, Options{});
  sim.ba.loss = 1.0;  // no ack ever comes back
  std::set<std::uint32_t> pushed;
  sim.ab.drop_if = [&](std::span<const std::byte> d) {
    for (const SegmentHeader& h : segments_of(d)) {
      if (h.cmd == Command::kPush) pushed.insert(h.sn);
    }
    return false;
  };
  ASSERT_EQ(sim.a().send(pattern(std::size_t{100} * 1256, 1)), Connection::SendStatus::kQueued);
  sim.run_for(5000);
  EXPECT_EQ(pushed.size(), 32u);
  EXPECT_EQ(*pushed.rbegin(), 31u);
  EXPECT_EQ(sim.a().in_flight(), 32u);
  EXPECT_GT(sim.a().stats().timeout_resends, 0u);
}

TEST(KcpLink, ZeroWindowIsProbedAndReopens) {
  Sim sim(4, Options{});
  sim.read_b = false;  // b's owner reads nothing for now
  int asks = 0;
  int tells = 0;
  sim.ab.drop_if = [&](std::span<const std::byte> d) {
    for (const SegmentHeader& h : segments_of(d)) asks += h.cmd == Command::kWindowAsk ? 1 : 0;
    return false;
  };
  sim.ba.drop_if = [&](std::span<const std::byte> d) {
    for (const SegmentHeader& h : segments_of(d)) tells += h.cmd == Command::kWindowTell ? 1 : 0;
    return false;
  };
  const Bytes data = pattern(std::size_t{200} * 1256, 5);
  EXPECT_FALSE(sim.transfer(data, {}, 20000));
  EXPECT_EQ(sim.a().peer_window(), 0u);
  EXPECT_GT(sim.b().readable(), 0u);
  EXPECT_LE(sim.b().readable(), 32u * 1256);
  EXPECT_LE(sim.a().in_flight(), 32u);
  EXPECT_GE(asks, 1) << "probed after 7 s of a zero window";
  EXPECT_GE(tells, 1) << "and b answered";
  EXPECT_EQ(sim.b().stats().outside_window, 0u) << "a kept within the window";

  sim.read_b = true;
  ASSERT_TRUE(sim.transfer(data, {}, 60000));
  EXPECT_EQ(sim.got_b, data);
}

TEST(KcpLink, ClockWrapsAround) {
  // Start 0.1 s before the 32-bit millisecond clock wraps.
  Sim sim(5, Options{}, 0xFFFFFFFFu - 100);
  sim.ab.loss = 0.1;
  sim.ba.loss = 0.1;
  sim.ab.jitter = 30;
  const Bytes data = pattern(300000, 6);
  ASSERT_TRUE(sim.transfer(data, {}, 120000));
  EXPECT_EQ(sim.got_b, data);
  EXPECT_LT(sim.now(), 0x80000000u) << "the run crossed the wrap";
}

TEST(KcpLink, SmallerWindowsAndMtuHold) {
  Options o;
  o.send_window = 4;
  o.receive_window = 4;
  o.mtu = 200;
  o.nodelay = false;
  o.interval = 50;
  Sim sim(8, o);
  for (Path* p : {&sim.ab, &sim.ba}) {
    p->loss = 0.1;
    p->jitter = 20;
  }
  const Bytes data = pattern(20000, 7);
  ASSERT_TRUE(sim.transfer(data, data, 600000));
  EXPECT_EQ(sim.got_b, data);
  EXPECT_EQ(sim.got_a, data);
}

}  // namespace
}  // namespace gatehouse::kcp
