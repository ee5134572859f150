// The version of the gateway segment's layout, and the pins that hold it.
//
// Every process of one gateway maps the same segment, and during a rolling
// reload a worker of a new build attaches to a segment made by the old one.
// So anything laid out in shared memory (the structs of this folder, the
// crypto states inside Session, and shm's own headers, descriptors and
// record framing) has one version, kLayoutVersion, and a process refuses a
// segment of another (shm::Segment::attach).
//
// A version is only as good as the discipline to bump it, so the build
// checks it: kPins below records, for the current version, the size and
// alignment of every shared struct and the numbering of every enum whose
// values live in the segment, folded into one fingerprint. A change to any
// of them fails the build here. To change the layout:
//   1. bump kLayoutVersion;
//   2. set kPinnedFingerprint to the fingerprint the failing assertion
//      prints in its error (the static_assert shows both values);
//   3. say in the commit what changed.
// The pin is deliberately not derived from the version: updating it without
// the bump is a visible lie in review, forgetting it is a failed build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "gatehouse/contract/close_reason.h"
#include "gatehouse/contract/control.h"
#include "gatehouse/contract/journal.h"
#include "gatehouse/contract/login_refusal.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/contract/session.h"
#include "gatehouse/shm/segment.h"
#include "gatehouse/shm/session_table.h"
#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse {

/// The gateway segment's layout version (docs/shm.md).
inline constexpr std::uint32_t kLayoutVersion = 28;

namespace layout {

/// FNV-1a, 64-bit, over a list of numbers (each as 8 little-endian bytes).
template <class Numbers = std::initializer_list<std::uint64_t>>
constexpr std::uint64_t fold(const Numbers& values) noexcept {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (std::uint64_t v : values) {
    for (int byte = 0; byte < 8; ++byte) {
      hash ^= (v >> (8 * byte)) & 0xff;
      hash *= 0x100000001b3ull;
    }
  }
  return hash;
}

/// What a type contributes: its size and alignment. Only types that can live
/// in memory shared by processes of different builds qualify.
template <class T>
constexpr std::uint64_t shape() noexcept {
  static_assert(std::is_standard_layout_v<T>, "a shared struct must be standard layout");
  return fold({sizeof(T), alignof(T)});
}

/// Every struct and enum numbering the segment holds.
inline constexpr std::uint64_t kFingerprint = fold({
    // shm: the segment header, the ring descriptor and record framing, the
    // session table's descriptor and slot headers.
    shape<shm::SegmentHeader>(),
    shape<shm::RegionEntry>(),
    shape<shm::RingDescriptor>(),
    shape<shm::RecordHeader>(),
    shm::kRecordAlignment,
    shm::kPaddingType,
    shape<shm::SlotHeader>(),
    // control block
    shape<Settings>(),
    shape<AddressRange>(),
    shape<ProcessStatus>(),
    shape<ControlBlock>(),
    shape<KickRequest>(),
    shape<DisabledBackendNames>(),
    shape<Seqlocked<DisabledBackendNames>>(),
    shape<Seqlocked<Settings>>(),
    kKickReasonBytes,
    kMaxDisabledBackends,
    kMaxWorkers,
    kMaxFrontends,
    static_cast<std::uint64_t>(kAffinityConnection),
    kMaxBackends,
    kAddressBytes,
    kPathBytes,
    kMaxListeners,
    kMaxExemptNetworks,
    kMaxProxyNetworks,
    kMaxServices,
    kServiceNameBytes,
    kListBytes,
    kMaxRoutes,
    shape<ProtoRoute>(),
    static_cast<std::uint64_t>(ProxyMode::kOptional),
    kDrainNoNewConnections,
    kDrainClosing,
    kCryptoClear,
    kCryptoLegacy,
    kCryptoModern,
    kCryptoModern1,
    kMaxGatewayKeys,
    static_cast<std::uint64_t>(LoginMode::kStaticTokens),
    static_cast<std::uint64_t>(LoginMode::kAuthService),
    static_cast<std::uint64_t>(FrameNumbering::kLaterGeneration),
    static_cast<std::uint64_t>(EtcdApi::kV2),
    // metrics
    shape<metrics::Shard>(),
    shape<metrics::HistogramCells>(),
    shape<MetricsBlock>(),
    shape<metrics::RoutingTable>(),
    shape<metrics::RoutingNames>(),
    metrics::kMaxServiceRows,
    metrics::kMaxInstanceRows,
    metrics::kRoutingNameBytes,
    metrics::kInstanceDisabled,
    metrics::kMoveReasonCount,
    metrics::kAdminCommandCount,
    metrics::kAdminResultCount,
    metrics::kCounterCount,
    metrics::kGaugeCount,
    metrics::kTimedCount,
    metrics::kComponentCount,
    metrics::kCauseCount,
    metrics::kBucketBoundsNs.size(),
    fold(metrics::kBucketBoundsNs),  // what a bucket counts is part of the contract too
    static_cast<std::uint64_t>(CloseReason::kCount),
    // ring records
    ipc::kConnOpened,
    ipc::kClientFrame,
    ipc::kConnClosed,
    ipc::kSend,
    ipc::kClose,
    ipc::kStreamOpen,
    ipc::kStreamMessage,
    ipc::kStreamClose,
    ipc::kGameMessage,
    ipc::kGameKick,
    ipc::kStreamEnded,
    ipc::kLoggedIn,
    shape<ipc::LoggedIn>(),
    shape<ipc::ConnOpened>(),
    shape<ipc::ClientFrame>(),
    shape<ipc::ConnClosed>(),
    shape<ipc::SendHeader>(),
    shape<ipc::CloseCommand>(),
    shape<ipc::StreamOpen>(),
    shape<ipc::StreamMessage>(),
    shape<ipc::StreamClose>(),
    shape<ipc::GameMessage>(),
    shape<ipc::GameKick>(),
    shape<ipc::StreamEnded>(),
    shape<ipc::LoginVerdict>(),
    shape<ipc::Replaced>(),
    ipc::kReplaced,
    static_cast<std::uint64_t>(DuplicateLogin::kAllow),
    Session::kLoginPending,
    ipc::kAuthRequest,
    ipc::kAuthVerdict,
    shape<ipc::AuthRequest>(),
    shape<ipc::AuthVerdict>(),
    Session::kAuthPending,
    static_cast<std::uint64_t>(LoginRefusal::kCount),
    // sessions and journals, with the crypto states inside them
    shape<Session>(),
    shape<legacy::Rc4State>(),
    shape<modern::AeadStream>(),
    Session::kClosed,
    Session::kModern,
    shape<JournalEntry>(),
    shape<Journal>(),
    kJournalEntries,
});

/// The fingerprint of kLayoutVersion (see the top of this file).
inline constexpr std::uint64_t kPinnedFingerprint = 1325601605631578952ull;

/// Its instantiation fails when the layout moved, and the compiler's "in
/// instantiation of Pin<computed, pinned>" shows both fingerprints.
template <std::uint64_t Computed, std::uint64_t Pinned>
struct Pin {
  static_assert(Computed == Pinned,
                "the shared-memory layout changed: bump kLayoutVersion and re-pin "
                "(contract/include/gatehouse/contract/layout.h)");
};
static_assert(sizeof(Pin<kFingerprint, kPinnedFingerprint>) != 0);

}  // namespace layout

// The structs whose size a reader is most likely to change, pinned one by one
// so that the error names them (the fingerprint covers these and the rest).
static_assert(sizeof(Session) == 632 && alignof(Session) == 8);
static_assert(sizeof(Journal) == 655640 && alignof(Journal) == 8);
static_assert(sizeof(Settings) == 13920 && alignof(Settings) == 8);
static_assert(sizeof(ControlBlock) == 41968 && alignof(ControlBlock) == 8);
static_assert(sizeof(metrics::Shard) == 1792 && alignof(metrics::Shard) == 128);
static_assert(sizeof(MetricsBlock) == 382080 && alignof(MetricsBlock) == 128);
static_assert(sizeof(legacy::Rc4State) == 258 && sizeof(modern::AeadStream) == 48);
static_assert(sizeof(shm::SegmentHeader) == 8248 && sizeof(shm::RingDescriptor) == 512);

// Copied between processes with memcpy and left behind by killed processes:
// nothing in the segment may have a constructor or destructor that matters.
static_assert(std::is_trivially_copyable_v<Session> && std::is_trivially_copyable_v<Settings>);
static_assert(std::is_trivially_copyable_v<legacy::Rc4State> &&
              std::is_trivially_copyable_v<modern::AeadStream>);

}  // namespace gatehouse
