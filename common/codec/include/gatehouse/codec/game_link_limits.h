// Size limits of the gateway <-> game service gRPC links (proto/game.proto,
// proto/batch.proto), shared by the backend-bridge and gw::game_server.
//
// gRPC fails a whole call when one message exceeds the receiver's limit; on a
// batched link that is every session of the game service, and the game sends
// the same unacknowledged events again on the next link, which fails again.
// So every channel and server sets its limits explicitly (kMaxMessageBytes
// both ways), and every sender keeps below them: a Batch is cut by bytes as
// well as by count (events_that_fit), and a message that could never fit one
// Event or Frame alone (kMaxEventMessageBytes) is dropped and counted by its
// sender instead of being sent.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

namespace gatehouse::game_link {

/// gRPC's default receive limit, set explicitly on every channel and server
/// of the game links, for sending and receiving.
inline constexpr std::size_t kMaxMessageBytes = std::size_t{4} << 20;

/// Bytes a length-delimited protobuf field (a field number below 16) takes
/// for `payload` bytes: its tag, its length varint and the bytes.
constexpr std::size_t delimited_field_bytes(std::size_t payload) noexcept {
  std::size_t length_bytes = 1;
  for (std::size_t rest = payload >> 7; rest != 0; rest >>= 7) ++length_bytes;
  return 1 + length_bytes + payload;
}

/// What a Batch leaves for its events: the limit less Batch.ack (a tag and a
/// varint of up to 10 bytes).
inline constexpr std::size_t kBatchEventBytes = kMaxMessageBytes - 11;

/// The largest `| proto i16 | body |` one Event (or one gonet2 Frame) may
/// carry so that it fits a message alone: the limit less every other field
/// of an Event (session, kind, user_id, seq; at most 33 bytes) or of a Frame
/// (Type, UserId; at most 13 bytes), the framing of the events field and of
/// the message field (at most 12 bytes), and Batch.ack; 64 bytes cover them.
inline constexpr std::size_t kMaxEventMessageBytes = kMaxMessageBytes - 64;

/// How many of `events` (a protobuf repeated message field, or any range of
/// messages with ByteSizeLong()), from the first, fit in `budget` bytes as
/// the elements of a repeated field: the prefix a sender writes now.
template <class Events>
std::size_t events_that_fit(const Events& events, std::size_t budget = kBatchEventBytes) {
  std::size_t used = 0;
  std::size_t n = 0;
  for (const auto& e : events) {
    used += delimited_field_bytes(e.ByteSizeLong());
    if (used > budget) break;
    ++n;
  }
  return n;
}

/// Cuts `sending` (a Batch) to the events that fit one gRPC message, at least
/// one, and moves the rest to the end of `overflow`, the next write's batch.
template <class Batch>
void cut_to_fit(Batch& sending, Batch& overflow) {
  const auto fit = static_cast<int>(std::max<std::size_t>(1, events_that_fit(sending.events())));
  if (fit >= sending.events_size()) return;
  auto& events = *sending.mutable_events();
  for (int i = fit; i < events.size(); ++i) overflow.mutable_events()->Add(std::move(events[i]));
  events.DeleteSubrange(fit, events.size() - fit);
}

}  // namespace gatehouse::game_link
