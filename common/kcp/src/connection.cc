#include "gatehouse/kcp/connection.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace gatehouse::kcp {

namespace {

constexpr std::uint32_t kInitialRto = 200;
constexpr std::uint32_t kMaxRto = 60000;
constexpr std::uint32_t kMinRtoNodelay = 30;
constexpr std::uint32_t kMinRtoNormal = 100;
/// What a peer's window is taken to be before it says (kcp-go's default).
constexpr std::uint32_t kInitialPeerWindow = 32;
/// While the peer's window is 0: ask after 7 s, then 1.5 times longer each
/// time, up to 120 s (the protocol's values).
constexpr Millis kProbeFirst = 7000;
constexpr Millis kProbeLimit = 120000;
/// A clock jump larger than this resynchronises the flush schedule.
constexpr std::int32_t kClockJump = 10000;

/// Signed distance on the wrapping 32-bit sequence and time lines.
constexpr std::int32_t diff(std::uint32_t later, std::uint32_t earlier) noexcept {
  return static_cast<std::int32_t>(later - earlier);
}

const Options& checked(const Options& options) {
  if (const auto problem = Connection::validate(options); !problem.empty()) {
    throw std::invalid_argument("kcp options: " + std::string(problem));
  }
  return options;
}

}  // namespace

std::string_view Connection::validate(const Options& options) noexcept {
  if (options.send_window == 0 || options.send_window > kMaxWindow) {
    return "send window must be 1..4096 segments";
  }
  if (options.receive_window == 0 || options.receive_window > kMaxWindow) {
    return "receive window must be 1..4096 segments";
  }
  if (options.mtu < kMinMtu || options.mtu > kMaxDatagramBytes) return "mtu must be 50..1500 bytes";
  if (options.interval < 10 || options.interval > 5000) return "interval must be 10..5000 ms";
  if (options.send_buffer_bytes == 0) return "send buffer must be at least one byte";
  if (options.dead_link == 0) return "dead link must be at least one transmission";
  return {};
}

Connection::Connection(std::uint32_t conv, const Options& options, Output output)
    : conv_(conv),
      options_(checked(options)),
      mss_(options.mtu - kHeaderBytes),
      max_acks_(options.mtu / kHeaderBytes),
      min_rto_(options.nodelay ? kMinRtoNodelay : kMinRtoNormal),
      output_(std::move(output)),
      peer_window_(kInitialPeerWindow),
      slots_(options.receive_window),
      rto_(kInitialRto) {
  if (!output_) throw std::invalid_argument("kcp: a connection needs an output");
  acks_.reserve(max_acks_);
  datagram_.reserve(options_.mtu);
}

// ------------------------------------------------------------------ input

InputStatus Connection::input(std::span<const std::byte> datagram, Millis now) {
  ++stats_.datagrams_in;
  InputStatus status = validate_datagram(datagram, conv_);
  if (status == InputStatus::kAccepted) status = check_claims(datagram);
  if (status != InputStatus::kAccepted) {
    ++stats_.datagrams_refused;
    return status;
  }

  const std::uint32_t una_before = snd_una_;
  bool acked_any = false;
  std::uint32_t latest_ack = 0;
  Millis latest_ack_ts = 0;
  while (!datagram.empty()) {
    // validate_datagram() checked every header and length.
    const SegmentHeader h = *decode_header(datagram);
    const auto payload = datagram.subspan(kHeaderBytes, h.len);
    datagram = datagram.subspan(kHeaderBytes + h.len);
    ++stats_.segments_in;

    peer_window_ = h.wnd;
    acknowledge_below(h.una);
    switch (h.cmd) {
      case Command::kAck:
        note_rtt(now, h.ts);
        acknowledge(h.sn);
        if (!acked_any || diff(h.sn, latest_ack) > 0) {
          acked_any = true;
          latest_ack = h.sn;
          latest_ack_ts = h.ts;
        }
        break;
      case Command::kPush:
        accept_push(h, payload);
        break;
      case Command::kWindowAsk:
        tell_window_ = true;
        break;
      case Command::kWindowTell:
        break;  // the header's wnd said it
    }
  }

  if (acked_any) {
    // Fast resend: a segment sent no later than one the peer acknowledged
    // and with a lower number was skipped over, likely lost.
    for (Pending& p : send_buffer_) {
      if (diff(p.sn, latest_ack) >= 0) break;
      if (!p.acked && diff(p.ts, latest_ack_ts) <= 0) ++p.skipped;
    }
  }
  sync_una();
  deliver();
  // The window slid: what waited for it can go now (as kcp-go does).
  if (diff(snd_una_, una_before) > 0 && !send_queue_.empty()) flush(now);
  return InputStatus::kAccepted;
}

InputStatus Connection::check_claims(std::span<const std::byte> datagram) const noexcept {
  while (!datagram.empty()) {
    const SegmentHeader h = *decode_header(datagram);
    if (h.cmd == Command::kAck && diff(h.sn, snd_nxt_) >= 0) return InputStatus::kAckBeyondSent;
    if (diff(h.una, snd_nxt_) > 0) return InputStatus::kUnaBeyondSent;
    datagram = datagram.subspan(kHeaderBytes + h.len);
  }
  return InputStatus::kAccepted;
}

void Connection::acknowledge_below(std::uint32_t una) {
  while (!send_buffer_.empty() && diff(una, send_buffer_.front().sn) > 0) {
    if (!send_buffer_.front().acked) unacked_bytes_ -= send_buffer_.front().data.size();
    send_buffer_.pop_front();
  }
  sync_una();
}

void Connection::acknowledge(std::uint32_t sn) {
  if (send_buffer_.empty()) return;
  // send_buffer_ holds consecutive numbers from its front.
  const std::uint32_t index = sn - send_buffer_.front().sn;
  if (index >= send_buffer_.size()) return;  // below snd_una_: acknowledged already
  Pending& p = send_buffer_[index];
  if (p.acked) return;
  p.acked = true;
  unacked_bytes_ -= p.data.size();
  std::vector<std::byte>().swap(p.data);
}

void Connection::sync_una() noexcept {
  // Segments acknowledged one by one stay until una passes them: the peer
  // may hold them out of order, and its window counts from its una, so the
  // send window must too.
  snd_una_ = send_buffer_.empty() ? snd_nxt_ : send_buffer_.front().sn;
}

void Connection::note_rtt(Millis now, Millis ts) {
  // The ack echoes the ts of the transmission it answers, so every sample is
  // unambiguous (no Karn's rule needed). One from the future is ignored; an
  // absurd one (a forged ts) is clamped.
  const std::int32_t sample = diff(now, ts);
  if (sample < 0) return;
  const std::int64_t rtt = std::min<std::int64_t>(sample, kMaxRto);
  if (!measured_) {
    measured_ = true;
    srtt_ = rtt;
    rttvar_ = rtt / 2;
  } else {
    // RFC 6298: rttvar = 3/4 rttvar + 1/4 |srtt - rtt|; srtt = 7/8 srtt + 1/8 rtt.
    rttvar_ = (3 * rttvar_ + std::abs(srtt_ - rtt)) / 4;
    srtt_ = std::max<std::int64_t>(1, (7 * srtt_ + rtt) / 8);
  }
  const std::int64_t rto = srtt_ + std::max<std::int64_t>(options_.interval, 4 * rttvar_);
  rto_ = static_cast<std::uint32_t>(std::clamp<std::int64_t>(rto, min_rto_, kMaxRto));
}

void Connection::accept_push(const SegmentHeader& header, std::span<const std::byte> payload) {
  const std::uint32_t offset = header.sn - rcv_nxt_;
  if (diff(header.sn, rcv_nxt_) >= 0 && offset >= options_.receive_window) {
    // Beyond the window: not stored and not acknowledged; the peer resends
    // once the window has moved.
    ++stats_.outside_window;
    return;
  }
  // Acknowledge even a duplicate: its earlier ack may have been lost.
  queue_ack(header.sn, header.ts);
  if (diff(header.sn, rcv_nxt_) < 0) {
    ++stats_.duplicate_segments;
    return;
  }
  Slot& slot = slots_[(head_ + offset) % slots_.size()];
  if (slot.present) {
    ++stats_.duplicate_segments;
    return;
  }
  slot.present = true;
  slot.data.assign(payload.begin(), payload.end());
}

void Connection::queue_ack(std::uint32_t sn, Millis ts) {
  acks_.push_back({sn, ts});
  // Owed acks are bounded by one datagram's worth: a full one goes now.
  if (acks_.size() >= max_acks_) {  // a datagram's worth: out now
    put_acks();
    emit();
  }
}

void Connection::deliver() {
  // Unread segments count against the window, so the receive queue holds
  // at most receive_window of them; the rest wait in their slots.
  while (receive_queue_.size() < options_.receive_window && slots_[head_].present) {
    Slot& slot = slots_[head_];
    slot.present = false;
    if (!slot.data.empty()) {
      readable_bytes_ += slot.data.size();
      receive_queue_.push_back(std::move(slot.data));
      slot.data = {};
    }
    head_ = (head_ + 1) % slots_.size();
    ++rcv_nxt_;
  }
}

std::size_t Connection::receive(std::span<std::byte> out) {
  const bool was_full = receive_queue_.size() >= options_.receive_window;
  std::size_t copied = 0;
  while (copied < out.size() && !receive_queue_.empty()) {
    const std::vector<std::byte>& front = receive_queue_.front();
    const std::size_t take = std::min(out.size() - copied, front.size() - read_offset_);
    std::memcpy(out.data() + copied, front.data() + read_offset_, take);
    copied += take;
    read_offset_ += take;
    if (read_offset_ == front.size()) {
      receive_queue_.pop_front();
      read_offset_ = 0;
    }
  }
  readable_bytes_ -= copied;
  deliver();
  // The peer saw a zero (or small) window: tell it that there is room again
  // rather than wait for its probe.
  if (was_full && receive_queue_.size() < options_.receive_window) tell_window_ = true;
  return copied;
}

// ------------------------------------------------------------------ send

Connection::SendStatus Connection::send(std::span<const std::byte> bytes) {
  if (bytes.size() > send_capacity()) return SendStatus::kFull;
  unacked_bytes_ += bytes.size();
  // Stream mode: top up the last queued segment, then cut mss-sized ones.
  if (!send_queue_.empty() && send_queue_.back().size() < mss_) {
    std::vector<std::byte>& last = send_queue_.back();
    const std::size_t take = std::min(mss_ - last.size(), bytes.size());
    last.insert(last.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
  }
  while (!bytes.empty()) {
    const std::size_t take = std::min(mss_, bytes.size());
    std::vector<std::byte>& chunk = send_queue_.emplace_back();
    chunk.reserve(mss_);
    chunk.assign(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
  }
  return SendStatus::kQueued;
}

std::size_t Connection::send_capacity() const noexcept {
  return options_.send_buffer_bytes - std::min(unacked_bytes_, options_.send_buffer_bytes);
}

// ------------------------------------------------------------------ output

void Connection::update(Millis now) {
  if (!updated_) {
    updated_ = true;
    next_flush_ = now;
  }
  std::int32_t late = diff(now, next_flush_);
  if (late >= kClockJump || late < -kClockJump) {
    next_flush_ = now;
    late = 0;
  }
  if (late >= 0) {
    next_flush_ += options_.interval;
    if (diff(now, next_flush_) >= 0) next_flush_ = now + options_.interval;
  } else if (!resend_due(now)) {
    return;
  }
  // A resend between intervals goes at its time, as check() promised.
  flush(now);
}

bool Connection::resend_due(Millis now) const noexcept {
  return std::any_of(send_buffer_.begin(), send_buffer_.end(),
                     [now](const Pending& p) { return !p.acked && diff(now, p.resend_at) >= 0; });
}

Millis Connection::check(Millis now) const noexcept {
  if (!updated_) return now;
  const std::int32_t until_flush = diff(next_flush_, now);
  if (until_flush <= 0 || until_flush >= kClockJump) return now;
  Millis next = next_flush_;
  for (const Pending& p : send_buffer_) {
    if (p.acked) continue;
    if (diff(p.resend_at, now) <= 0) return now;
    if (diff(p.resend_at, next) < 0) next = p.resend_at;
  }
  return next;
}

void Connection::flush(Millis now) {
  put_acks();

  if (peer_window_ == 0) {
    if (probe_wait_ == 0) {
      probe_wait_ = kProbeFirst;
      probe_at_ = now + probe_wait_;
    } else if (diff(now, probe_at_) >= 0) {
      probe_wait_ = std::min(probe_wait_ + probe_wait_ / 2, kProbeLimit);
      probe_at_ = now + probe_wait_;
      ask_window_ = true;
    }
  } else {
    probe_wait_ = 0;
  }
  if (ask_window_) put(control(Command::kWindowAsk), {});
  if (tell_window_) put(control(Command::kWindowTell), {});
  ask_window_ = false;
  tell_window_ = false;

  // New segments, as far as both windows allow.
  const std::uint32_t window = std::min(options_.send_window, peer_window_);
  while (!send_queue_.empty() && diff(snd_nxt_, snd_una_ + window) < 0) {
    Pending& p = send_buffer_.emplace_back();
    p.sn = snd_nxt_++;
    p.data = std::move(send_queue_.front());
    send_queue_.pop_front();
  }
  if (send_buffer_.empty()) snd_una_ = snd_nxt_;

  const SegmentHeader push = control(Command::kPush);
  for (Pending& p : send_buffer_) {
    if (p.acked) continue;
    if (p.transmissions == 0) {
      p.rto = rto_;
      ++stats_.segments_sent;
    } else if (options_.fast_resend > 0 && p.skipped >= options_.fast_resend) {
      ++stats_.fast_resends;
    } else if (diff(now, p.resend_at) >= 0) {
      // Back off: x1.5 with nodelay, else x2.
      p.rto = std::min(kMaxRto, p.rto + (options_.nodelay ? p.rto / 2 : p.rto));
      ++stats_.timeout_resends;
    } else {
      continue;
    }
    p.skipped = 0;
    p.ts = now;
    p.resend_at = now + p.rto;
    if (++p.transmissions >= options_.dead_link) dead_ = true;
    SegmentHeader h = push;
    h.ts = now;
    h.sn = p.sn;
    h.len = static_cast<std::uint32_t>(p.data.size());
    put(h, p.data);
  }
  emit();
}

void Connection::put_acks() {
  for (const Ack& ack : acks_) {
    SegmentHeader h = control(Command::kAck);
    h.sn = ack.sn;
    h.ts = ack.ts;
    put(h, {});
  }
  acks_.clear();
}

std::uint16_t Connection::free_window() const noexcept {
  const std::size_t queued = receive_queue_.size();
  return static_cast<std::uint16_t>(
      queued < options_.receive_window ? options_.receive_window - queued : 0);
}

SegmentHeader Connection::control(Command cmd) const noexcept {
  SegmentHeader h;
  h.conv = conv_;
  h.cmd = cmd;
  h.wnd = free_window();
  h.una = rcv_nxt_;
  return h;
}

void Connection::put(const SegmentHeader& header, std::span<const std::byte> payload) {
  // A push is at most mss bytes, so a segment always fits an empty datagram.
  if (datagram_.size() + kHeaderBytes + payload.size() > options_.mtu) emit();
  const std::size_t at = datagram_.size();
  datagram_.resize(at + kHeaderBytes);
  encode_header(header, std::span<std::byte, kHeaderBytes>(datagram_.data() + at, kHeaderBytes));
  datagram_.insert(datagram_.end(), payload.begin(), payload.end());
}

void Connection::emit() {
  if (datagram_.empty()) return;
  ++stats_.datagrams_out;
  output_(datagram_);
  datagram_.clear();
}

}  // namespace gatehouse::kcp
