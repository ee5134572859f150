// The one place ring records enter a process. A reader of ring `Kind` hands
// each record to its handler decoded as its type's header, after checking it
// against the contract (records.h):
//   - its type is one this ring carries;
//   - its payload is exactly its header, or at least it where bytes follow
//     (a client frame, a send, a stream or game message), and a stream
//     message carries its proto;
//   - its connection id names a slot of the session table that belongs to
//     the ring's worker (worker_of_slot) and, on a frontend's rings, to that
//     frontend (frontend_of_slot), so no record reaches another worker's
//     sessions or another frontend's connections;
//   - its enums and times are in range: close reasons below kCount, the
//     listener below listener_count, the accept time within kMaxUnixMs.
// Anything else is a violation (shm/violation.h): the line names the ring,
// the record's position and type, the field and its value, and the reader
// exits. Values a correct writer can produce but that still name nothing (a
// stale generation, a user id, a game's gRPC code) pass: the reader's own
// lookups reject or bound them.
#pragma once

#include <cstdint>
#include <string>

#include "gatehouse/contract/control.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse::ipc {

/// The checks, for every ring (record_reader.cc).
class RecordChecks {
 public:
  /// `peer`: the frontend of a frontend ring, the bridge of a bridge ring.
  RecordChecks(RingKind kind, std::uint32_t worker, const Settings& settings, std::uint32_t peer);

  /// `record` as a Header, checked; a violation when it is not one.
  template <class Header>
  Parsed<Header> decode(const shm::Record& record) const;
  /// A record of a type this ring does not carry.
  [[noreturn]] void unexpected(const shm::Record& record) const;

 private:
  [[noreturn]] void refuse(const shm::Record& record, const char* field, std::uint64_t value,
                           const char* rule) const;
  void check_conn(const shm::Record& record, std::uint64_t conn) const;
  /// On a worker -> bridge ring: the session's user belongs to this bridge.
  void check_user(const shm::Record& record, std::int64_t user_id) const;

  static constexpr std::uint32_t kAnyPeer = ~std::uint32_t{0};

  std::string ring_;  // the region's name
  std::uint32_t worker_;
  std::uint32_t frontend_;  // kAnyPeer on the bridge's rings
  std::uint32_t bridge_;    // kAnyPeer but on the worker -> bridge ring
  Settings shape_;          // workers, frontends, bridges, max_connections: the owners
  std::uint32_t listener_count_;
};

/// What the reader of ring `Kind` uses: visit() calls `handler` with the
/// record's Parsed<Header>, for the types of that ring only (so a handler
/// needs an overload for each of its ring's types and no other).
template <RingKind Kind>
class RecordReader {
 public:
  /// `peer`: the frontend of a frontend ring, the bridge of a bridge ring.
  RecordReader(std::uint32_t worker, const Settings& settings, std::uint32_t peer = 0)
      : checks_(Kind, worker, settings, peer) {}

  template <class Handler>
  decltype(auto) visit(const shm::Record& record, Handler&& handler) const {
    if constexpr (Kind == RingKind::kFrontendToWorker) {
      switch (record.type) {
        case kConnOpened:
          return handler(checks_.decode<ConnOpened>(record));
        case kClientFrame:
          return handler(checks_.decode<ClientFrame>(record));
        case kConnClosed:
          return handler(checks_.decode<ConnClosed>(record));
        default:
          break;
      }
    } else if constexpr (Kind == RingKind::kWorkerToFrontend) {
      switch (record.type) {
        case kSend:
          return handler(checks_.decode<SendHeader>(record));
        case kClose:
          return handler(checks_.decode<CloseCommand>(record));
        case kLoggedIn:
          return handler(checks_.decode<LoggedIn>(record));
        default:
          break;
      }
    } else if constexpr (Kind == RingKind::kWorkerToBridge) {
      switch (record.type) {
        case kStreamOpen:
          return handler(checks_.decode<StreamOpen>(record));
        case kStreamMessage:
          return handler(checks_.decode<StreamMessage>(record));
        case kStreamClose:
          return handler(checks_.decode<StreamClose>(record));
        case kAuthRequest:
          return handler(checks_.decode<AuthRequest>(record));
        default:
          break;
      }
    } else {
      switch (record.type) {
        case kGameMessage:
          return handler(checks_.decode<GameMessage>(record));
        case kGameKick:
          return handler(checks_.decode<GameKick>(record));
        case kStreamEnded:
          return handler(checks_.decode<StreamEnded>(record));
        case kLoginVerdict:
          return handler(checks_.decode<LoginVerdict>(record));
        case kReplaced:
          return handler(checks_.decode<Replaced>(record));
        case kAuthVerdict:
          return handler(checks_.decode<AuthVerdict>(record));
        default:
          break;
      }
    }
    checks_.unexpected(record);
  }

 private:
  RecordChecks checks_;
};

}  // namespace gatehouse::ipc
