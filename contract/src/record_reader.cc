#include "gatehouse/contract/record_reader.h"

#include <string>
#include <type_traits>

#include "gatehouse/contract/close_reason.h"
#include "gatehouse/contract/shm_checks.h"
#include "gatehouse/shm/violation.h"

namespace gatehouse::ipc {
namespace {

/// Headers followed by bytes; every other record is its header alone.
template <class Header>
constexpr bool kHasTail =
    std::is_same_v<Header, ClientFrame> || std::is_same_v<Header, SendHeader> ||
    std::is_same_v<Header, StreamMessage> || std::is_same_v<Header, GameMessage> ||
    std::is_same_v<Header, AuthRequest>;

constexpr std::uint32_t kReasons = static_cast<std::uint32_t>(CloseReason::kCount);

}  // namespace

RecordChecks::RecordChecks(RingKind kind, std::uint32_t worker, const Settings& settings,
                           std::uint32_t peer)
    : ring_(ring_region_name(kind, worker, peer)),
      worker_(worker),
      frontend_(kind == RingKind::kFrontendToWorker || kind == RingKind::kWorkerToFrontend
                    ? peer
                    : kAnyPeer),
      // The bridge's replies name connections only: the worker looks them up.
      bridge_(kind == RingKind::kWorkerToBridge ? peer : kAnyPeer),
      shape_(settings),
      listener_count_(settings.listener_count) {}

void RecordChecks::refuse(const shm::Record& record, const char* field, std::uint64_t value,
                          const char* rule) const {
  shm::violation(ring_ + ": record at position " + std::to_string(record.position) + " type " +
                 std::to_string(record.type) + ": " + field + " = " + std::to_string(value) + " (" +
                 rule + ")");
}

void RecordChecks::unexpected(const shm::Record& record) const {
  // The layout version pins every record type (layout.h), so a type this
  // ring does not carry is not a version skew: it is corruption.
  refuse(record, "type", record.type, "not a record of this ring");
}

void RecordChecks::check_conn(const shm::Record& record, std::uint64_t conn) const {
  const std::uint32_t slot = shm::ConnectionId(conn).slot();
  if (slot >= shape_.max_connections) {
    refuse(record, "conn's slot", slot, "beyond the session table");
  }
  // With the shape this reader was made with.
  if (worker_of_slot(slot, shape_) != worker_) {
    refuse(record, "conn's slot", slot, "a slot of another worker");
  }
  if (frontend_ != kAnyPeer && frontend_of_slot(slot, shape_) != frontend_) {
    refuse(record, "conn's slot", slot, "a slot of another frontend");
  }
}

void RecordChecks::check_user(const shm::Record& record, std::int64_t user_id) const {
  if (bridge_ != kAnyPeer && bridge_of_user(user_id, shape_) != bridge_) {
    refuse(record, "user_id", static_cast<std::uint64_t>(user_id), "a user of another bridge");
  }
}

template <class Header>
Parsed<Header> RecordChecks::decode(const shm::Record& record) const {
  const std::size_t size = record.payload.size();
  if (size < sizeof(Header) || (!kHasTail<Header> && size != sizeof(Header))) {
    refuse(record, "payload bytes", size, kHasTail<Header> ? "at least its header" : "its header");
  }
  Parsed<Header> p = *parse_record<Header>(record.payload);
  check_conn(record, p.header.conn);
  if constexpr (std::is_same_v<Header, ConnOpened>) {
    if (listener_count_ != 0 && p.header.listener >= listener_count_) {
      refuse(record, "listener", p.header.listener, "below listener_count");
    }
    if (p.header.accepted_unix_ms < 0 || p.header.accepted_unix_ms > kMaxUnixMs) {
      refuse(record, "accepted_unix_ms", static_cast<std::uint64_t>(p.header.accepted_unix_ms),
             "0 to kMaxUnixMs");
    }
  } else if constexpr (std::is_same_v<Header, ConnClosed> || std::is_same_v<Header, CloseCommand>) {
    if (p.header.reason >= kReasons) refuse(record, "reason", p.header.reason, "a CloseReason");
  }
  if constexpr (std::is_same_v<Header, StreamOpen> || std::is_same_v<Header, StreamMessage> ||
                std::is_same_v<Header, StreamClose>) {
    check_user(record, p.header.user_id);
  } else if constexpr (std::is_same_v<Header, AuthRequest>) {
    const std::uint32_t slot = shm::ConnectionId(p.header.conn).slot();
    if (bridge_ != kAnyPeer && bridge_of_slot(slot, shape_) != bridge_) {
      refuse(record, "conn's slot", slot, "a login of another bridge");
    }
  }
  if constexpr (std::is_same_v<Header, StreamOpen>) {
    if ((p.header.flags & ~(kAwaitVerdict | kReplaceOlder)) != 0 ||
        p.header.flags == (kAwaitVerdict | kReplaceOlder)) {
      refuse(record, "flags", p.header.flags, "0, kAwaitVerdict or kReplaceOlder");
    }
  } else if constexpr (std::is_same_v<Header, AuthVerdict>) {
    const auto refusal = static_cast<LoginRefusal>(p.header.refusal);
    if (p.header.user_id < 0) {
      refuse(record, "user_id", static_cast<std::uint32_t>(p.header.user_id), "0 or more");
    }
    if (p.header.user_id == 0 && refusal != LoginRefusal::kAuthRefused &&
        refusal != LoginRefusal::kAuthTimeout && refusal != LoginRefusal::kAuthBusy &&
        refusal != LoginRefusal::kAuthUnavailable) {
      refuse(record, "refusal", p.header.refusal, "an auth_* LoginRefusal");
    }
    if (p.header.claimed_user_id < 0) {
      refuse(record, "claimed_user_id", static_cast<std::uint32_t>(p.header.claimed_user_id),
             "0 or more");
    }
  } else if constexpr (std::is_same_v<Header, StreamMessage>) {
    if (p.tail.size() < sizeof(std::int16_t)) {
      refuse(record, "message bytes", p.tail.size(), "at least the proto");
    }
  }
  return p;
}

template Parsed<ConnOpened> RecordChecks::decode(const shm::Record&) const;
template Parsed<ClientFrame> RecordChecks::decode(const shm::Record&) const;
template Parsed<ConnClosed> RecordChecks::decode(const shm::Record&) const;
template Parsed<SendHeader> RecordChecks::decode(const shm::Record&) const;
template Parsed<CloseCommand> RecordChecks::decode(const shm::Record&) const;
template Parsed<LoggedIn> RecordChecks::decode(const shm::Record&) const;
template Parsed<StreamOpen> RecordChecks::decode(const shm::Record&) const;
template Parsed<StreamMessage> RecordChecks::decode(const shm::Record&) const;
template Parsed<StreamClose> RecordChecks::decode(const shm::Record&) const;
template Parsed<GameMessage> RecordChecks::decode(const shm::Record&) const;
template Parsed<GameKick> RecordChecks::decode(const shm::Record&) const;
template Parsed<StreamEnded> RecordChecks::decode(const shm::Record&) const;
template Parsed<LoginVerdict> RecordChecks::decode(const shm::Record&) const;
template Parsed<Replaced> RecordChecks::decode(const shm::Record&) const;
template Parsed<AuthRequest> RecordChecks::decode(const shm::Record&) const;
template Parsed<AuthVerdict> RecordChecks::decode(const shm::Record&) const;

}  // namespace gatehouse::ipc
