// The records the gateway processes exchange over the shared-memory rings.
// Every record's payload starts with the connection id it concerns; some
// carry bytes after a fixed header. All PODs, copied with memcpy (records are
// only 8-byte aligned in the ring). Changing anything here changes the shm
// layout: layout.h pins every struct here, so the build fails until
// kLayoutVersion is bumped.
//
//   frontend -> worker[i]        worker[i] -> frontend
//     kConnOpened   ConnOpened     kSend   SendHeader + wire bytes
//     kClientFrame  ClientFrame      (one or more | size u16 | payload |,
//                   + payload         already encrypted)
//     kConnClosed   ConnClosed     kClose  CloseCommand
//                                  kLoggedIn LoggedIn (the login deadline
//                                    and pre-login budget end)
//
//   worker[i] -> bridge           bridge -> worker[i]
//     kStreamOpen    StreamOpen     kGameMessage GameMessage + | proto | body |
//     kStreamMessage StreamMessage  kGameKick    GameKick
//                    + | proto | body |         kStreamEnded StreamEnded
//     kStreamClose   StreamClose    kLoginVerdict LoginVerdict (a StreamOpen
//     kAuthRequest   AuthRequest      that asked for one: duplicate-login)
//                    + login body   kReplaced    Replaced (the user logged
//                    (login = auth:)  in again elsewhere)
//                                   kAuthVerdict AuthVerdict (the auth
//                                     service's answer to an AuthRequest)
//
// Connection lifecycle (who may release the session slot, and when):
//   - the frontend allocates the slot at accept and sends kConnOpened;
//   - the worker sends a kClose to kick a connection, and answers every
//     kConnClosed with one (again, if it had kicked it already);
//   - the frontend releases the slot once it has both closed the socket and
//     received a kClose, and ignores a kClose whose id is no longer live. So
//     a slot is reused only after both sides are done with its tenant.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "gatehouse/contract/control.h"
#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse::ipc {

enum RecordType : std::uint32_t {
  kConnOpened = 1,
  kClientFrame = 2,
  kConnClosed = 3,
  kSend = 10,
  kClose = 11,
  kLoggedIn = 12,
  kStreamOpen = 20,
  kStreamMessage = 21,
  kStreamClose = 22,
  kAuthRequest = 23,
  kGameMessage = 30,
  kGameKick = 31,
  kStreamEnded = 32,
  kLoginVerdict = 33,
  kReplaced = 34,
  kAuthVerdict = 35,
};

struct ConnOpened {
  std::uint64_t conn;
  std::uint8_t address[16];  ///< IPv6, or IPv4-mapped IPv6
  std::uint16_t port;
  std::uint16_t listener;  ///< index of the listener that accepted it
  std::uint32_t reserved;
  std::int64_t accepted_unix_ms;
};

struct ClientFrame {
  std::uint64_t conn;
  std::uint32_t frame_no;  ///< 1 for the connection's first frame, +1 each
  std::uint32_t reserved;
  // followed by the frame's payload as received (still encrypted)
};

struct ConnClosed {
  std::uint64_t conn;
  std::uint32_t reason;  ///< CloseReason
  std::uint32_t reserved;
};

struct SendHeader {
  std::uint64_t conn;
  // followed by wire bytes
};

struct CloseCommand {
  std::uint64_t conn;
  std::uint32_t reason;  ///< CloseReason; kClientClosed when acknowledging
  std::uint32_t reserved;
};

/// The connection's session logged in: the frontend lifts its login
/// deadline and pre-login budget. Written before the login ack, so the
/// frontend knows before the client can.
struct LoggedIn {
  std::uint64_t conn;
};

/// StreamOpen::flags
inline constexpr std::uint32_t kAwaitVerdict = 1;  ///< refuse: the worker waits for kLoginVerdict
inline constexpr std::uint32_t kReplaceOlder = 2;  ///< replace: an older session of the user goes

/// The StreamOpen flags a login carries under `policy`.
constexpr std::uint32_t stream_open_flags(DuplicateLogin policy) noexcept {
  switch (policy) {
    case DuplicateLogin::kRefuse:
      return kAwaitVerdict;
    case DuplicateLogin::kReplace:
      return kReplaceOlder;
    case DuplicateLogin::kAllow:
      break;
  }
  return 0;
}

struct StreamOpen {
  std::uint64_t conn;
  std::int64_t user_id;
  std::uint64_t login_seq;  ///< Session::login_seq
  std::uint32_t flags;
  std::uint32_t reserved;
};

// The stream records carry the session's user id, which picks its game
// service: a bridge that re-reads records its dead predecessor had handled
// routes them without the session's state (it may have closed since).
struct StreamMessage {
  std::uint64_t conn;
  std::int64_t user_id;
  std::uint64_t seq;  ///< the client packet's seq: the game's de-duplication key
  // followed by | proto i16 | body |
};

struct StreamClose {
  std::uint64_t conn;
  std::int64_t user_id;
};

struct GameMessage {
  std::uint64_t conn;
  std::uint64_t seq;  ///< batched links: the game's (proto/batch.proto Event.seq); 0: none
  // followed by | proto i16 | body |
};

struct GameKick {
  std::uint64_t conn;
};

struct StreamEnded {
  std::uint64_t conn;
  std::int32_t grpc_code;  ///< 0: the game ended the stream cleanly
  std::uint32_t reserved;
};

/// The bridge's answer to a StreamOpen with kAwaitVerdict.
struct LoginVerdict {
  std::uint64_t conn;
  std::uint32_t accepted;  ///< 0: the user is logged in already
  std::uint32_t reserved;
};

/// The session's user logged in again: the worker closes it (replaced).
struct Replaced {
  std::uint64_t conn;
};

/// A login for the auth service to check (login = auth:); the session waits
/// in Session::kAuthPending for the kAuthVerdict.
struct AuthRequest {
  std::uint64_t conn;
  std::uint8_t address[16];  ///< the client's, as in ConnOpened
  std::uint16_t port;
  std::uint16_t reserved0;
  std::uint32_t reserved1;
  // followed by the user_login_req body as the client sent it (decrypted)
};

/// The auth service's answer to an AuthRequest, or the bridge's when the
/// call failed.
struct AuthVerdict {
  std::uint64_t conn;
  std::int32_t user_id;          ///< > 0: the login succeeds as it; 0: refused
  std::uint32_t refusal;         ///< refused: a LoginRefusal, one of the kAuth* ones
  std::int32_t claimed_user_id;  ///< refused by the service: the account it named (0: none)
  std::uint32_t reserved;
};

/// Writes `header` followed by `tail` as one record (unpublished).
template <class Header>
shm::WriteStatus write_record(shm::RingProducer& ring, RecordType type, const Header& header,
                              std::span<const std::byte> tail = {}) noexcept {
  shm::WriteStatus status;
  const std::span<std::byte> out = ring.claim(type, sizeof(Header) + tail.size(), &status);
  if (status != shm::WriteStatus::kOk) return status;
  std::memcpy(out.data(), &header, sizeof(Header));
  if (!tail.empty()) std::memcpy(out.data() + sizeof(Header), tail.data(), tail.size());
  ring.commit(out.size());
  return status;
}

/// The fixed header of a record, and what follows it.
template <class Header>
struct Parsed {
  Header header;
  std::span<const std::byte> tail;
};
template <class Header>
std::optional<Parsed<Header>> parse_record(std::span<const std::byte> payload) noexcept {
  if (payload.size() < sizeof(Header)) return std::nullopt;
  Parsed<Header> p;
  std::memcpy(&p.header, payload.data(), sizeof(Header));
  p.tail = payload.subspan(sizeof(Header));
  return p;
}

/// Room a worker must see in an output ring before it takes an input record:
/// the largest record any input can make it write.
inline constexpr std::size_t kMaxRecordBytes = 16 + 2 + 65535 + 64;

}  // namespace gatehouse::ipc
