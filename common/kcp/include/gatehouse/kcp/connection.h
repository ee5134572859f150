// One KCP conversation in stream mode, sans I/O (docs/kcp.md): no socket and
// no clock inside. The owner feeds it the datagrams that arrived for its
// conv (input), the bytes to send (send), the time (every call takes `now`),
// and gets back the datagrams to put on the wire through the output
// callback, each at most Options::mtu bytes. It calls update() at the time
// check() names (within Options::interval), and flush() after a send() that
// should leave now rather than at the next interval.
//
//   input(datagram, now) ---> acks, data, windows   ---> receive(buffer)
//   send(bytes) ---> queue ---> window ---> flush/update ---> output(datagram)
//
// Everything is bounded: the bytes send() accepts and the peer has not
// acknowledged (Options::send_buffer_bytes), the segments in flight (the send
// window), the segments received out of order or unread (twice the receive
// window, each at most kMaxSegmentPayload), the acks owed (one datagram's
// worth: more go out at once). A datagram never makes it throw or read out
// of bounds; a malformed one is refused whole, with a reason.
//
// A push beyond the receive window is dropped unacknowledged and counted
// (Stats::outside_window), not refused: a correct peer sends one while it
// still assumes a larger window than ours (kcp-go assumes 32 at first, the
// C library 128), and KCP's answer is to let it resend.
//
// Not thread-safe: one owner (the listener's thread) makes every call.
//
// Not implemented, as gonet2 did not use them: message mode (frg), the
// congestion window (nc=1: the windows alone pace), encryption and FEC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "gatehouse/kcp/segment.h"

namespace gatehouse::kcp {

/// Milliseconds on a clock the owner chooses; wraps at 2^32 (the wire's ts
/// is 32 bits), and every comparison is by signed difference.
using Millis = std::uint32_t;

/// gonet2's settings are the defaults (udp-sndwnd 32, udp-rcvwnd 32,
/// udp-mtu 1280, nodelay 1, interval 20, resend 1, nc 1).
struct Options {
  std::uint32_t send_window = 32;     ///< segments in flight at most (also <= peer's window)
  std::uint32_t receive_window = 32;  ///< segments buffered from the peer, unread or out of order
  std::size_t mtu = 1280;             ///< the largest datagram sent; a segment carries mtu - 24
  bool nodelay = true;                ///< minimum RTO 30 ms (else 100), backoff x1.5 (else x2)
  Millis interval = 20;               ///< update() period: acks and resends wait at most this
  std::uint32_t fast_resend = 1;      ///< resend after this many later acks; 0: only on RTO
  /// What send() accepts beyond what the peer acknowledged: when a slow or
  /// gone peer stops acknowledging, send() says kFull past this.
  std::size_t send_buffer_bytes = std::size_t{256} * 1024;
  /// A segment sent this many times without an ack marks the link dead.
  std::uint32_t dead_link = 20;
};

inline constexpr std::uint32_t kMaxWindow = 4096;
inline constexpr std::size_t kMinMtu = 50;

/// Counters for metrics and tests; they only grow.
struct Stats {
  std::uint64_t datagrams_in = 0;
  std::uint64_t datagrams_refused = 0;  ///< input() said other than kAccepted
  std::uint64_t segments_in = 0;
  std::uint64_t duplicate_segments = 0;  ///< pushes already received
  std::uint64_t outside_window = 0;      ///< pushes beyond the receive window (dropped)
  std::uint64_t datagrams_out = 0;
  std::uint64_t segments_sent = 0;  ///< pushes, first transmissions
  std::uint64_t timeout_resends = 0;
  std::uint64_t fast_resends = 0;
};

class Connection {
 public:
  /// Called with each datagram to send; the span is valid for the call only.
  /// It must not call back into the connection.
  using Output = std::function<void(std::span<const std::byte> datagram)>;

  /// Throws std::invalid_argument for options out of range (a configuration
  /// error, see validate()) or an empty output.
  Connection(std::uint32_t conv, const Options& options, Output output);

  /// Empty when the options are usable, else what is wrong with them.
  static std::string_view validate(const Options& options) noexcept;

  /// One datagram from the peer. A refused one changes nothing. May output
  /// (acks when a datagram's worth are owed; new data when acks opened the
  /// window).
  InputStatus input(std::span<const std::byte> datagram, Millis now);

  enum class SendStatus : std::uint8_t { kQueued, kFull };
  /// Appends to the outgoing stream, all or nothing: kFull when the bytes
  /// do not fit in send_capacity(). Sent by the next flush()/update().
  SendStatus send(std::span<const std::byte> bytes);
  std::size_t send_capacity() const noexcept;

  /// Copies up to out.size() bytes of the incoming stream, in order; returns
  /// how many (0: nothing to read).
  std::size_t receive(std::span<std::byte> out);
  std::size_t readable() const noexcept { return readable_bytes_; }

  /// Call at check()'s time (or more often): every interval it sends acks,
  /// window probes, new data within the window and resends what timed out;
  /// between intervals, it sends when a resend is due.
  void update(Millis now);
  /// When update() wants to run next (at most `interval` after the last).
  Millis check(Millis now) const noexcept;
  /// Sends everything that can go now, without waiting for the interval.
  void flush(Millis now);
  /// Asks the peer for its window with the next flush()/update() (a window
  /// probe, which a live peer answers with a window tell): a keepalive that
  /// needs no data, for an owner that wants to know whether the peer still
  /// keeps the conversation (KCP has no close).
  void ask_window() noexcept { ask_window_ = true; }

  /// A segment went unacknowledged dead_link times: the peer is gone.
  bool dead() const noexcept { return dead_; }
  /// Bytes accepted by send() and not acknowledged by the peer.
  std::size_t unacknowledged_bytes() const noexcept { return unacked_bytes_; }
  /// Segments sent and not yet acknowledged (<= send window).
  std::size_t in_flight() const noexcept { return send_buffer_.size(); }
  /// The peer's free receive window as it last said.
  std::uint32_t peer_window() const noexcept { return peer_window_; }
  std::uint32_t rto() const noexcept { return rto_; }
  std::uint32_t conv() const noexcept { return conv_; }
  const Stats& stats() const noexcept { return stats_; }

 private:
  struct Pending {
    std::uint32_t sn = 0;
    Millis ts = 0;         ///< of the last transmission
    Millis resend_at = 0;  ///< RTO expiry
    std::uint32_t rto = 0;
    std::uint32_t transmissions = 0;
    std::uint32_t skipped = 0;  ///< acks of later segments sent after it (fast resend)
    bool acked = false;
    std::vector<std::byte> data;
  };
  struct Slot {
    bool present = false;
    std::vector<std::byte> data;
  };
  struct Ack {
    std::uint32_t sn;
    Millis ts;
  };

  InputStatus check_claims(std::span<const std::byte> datagram) const noexcept;
  void queue_ack(std::uint32_t sn, Millis ts);
  void acknowledge_below(std::uint32_t una);
  void acknowledge(std::uint32_t sn);
  void note_rtt(Millis now, Millis ts);
  void accept_push(const SegmentHeader& header, std::span<const std::byte> payload);
  void deliver();
  void sync_una() noexcept;
  bool resend_due(Millis now) const noexcept;
  std::uint16_t free_window() const noexcept;
  SegmentHeader control(Command cmd) const noexcept;
  void put(const SegmentHeader& header, std::span<const std::byte> payload);
  void emit();
  void put_acks();  ///< the acks owed as segments of the datagram being built

  const std::uint32_t conv_;
  const Options options_;
  const std::size_t mss_;
  const std::size_t max_acks_;
  const std::uint32_t min_rto_;
  Output output_;

  // Sending: the stream in mss-sized chunks, then the segments in flight.
  std::deque<std::vector<std::byte>> send_queue_;
  std::deque<Pending> send_buffer_;  ///< sn snd_una_ .. snd_nxt_-1, in order
  std::size_t unacked_bytes_ = 0;
  std::uint32_t snd_una_ = 0;
  std::uint32_t snd_nxt_ = 0;
  std::uint32_t peer_window_;

  // Receiving: out-of-order segments by sn % receive_window, then the
  // in-order ones the owner has not read.
  std::vector<Slot> slots_;
  std::size_t head_ = 0;  ///< the slot of rcv_nxt_
  std::deque<std::vector<std::byte>> receive_queue_;
  std::size_t read_offset_ = 0;  ///< into receive_queue_.front()
  std::size_t readable_bytes_ = 0;
  std::uint32_t rcv_nxt_ = 0;
  std::vector<Ack> acks_;

  // RTT (RFC 6298), in ms.
  bool measured_ = false;
  std::int64_t srtt_ = 0;
  std::int64_t rttvar_ = 0;
  std::uint32_t rto_ = 200;

  // Window probing while the peer's window is 0.
  bool ask_window_ = false;
  bool tell_window_ = false;
  Millis probe_at_ = 0;
  Millis probe_wait_ = 0;

  bool updated_ = false;
  Millis next_flush_ = 0;
  bool dead_ = false;
  Stats stats_;
  std::vector<std::byte> datagram_;  ///< the datagram being filled
};

}  // namespace gatehouse::kcp
