// Deterministic test records for the ring tests: the payload of record `seq`
// is fully determined by seq, so any consumer can check every byte it gets
// without sharing state with the producer.
//
//   | seq u64 | body: byte i = (seq * 131 + i * 7) & 0xff |
//
// Length varies with seq in [8, max_length] and hits both ends often, so the
// wrap/padding paths are exercised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse::shm::testing {

/// The layout version of the segments the ring tests make.
inline constexpr std::uint32_t kRingTestLayout = 1;

/// How long records are: `max_length` (>= 8) always, or varying up to it.
struct RecordShape {
  std::size_t max_length;
  bool fixed = false;
  /// Payload length of record `seq`.
  std::size_t length(std::uint64_t seq) const;
};
/// Record type of record `seq` (never kPaddingType).
std::uint32_t record_type(std::uint64_t seq);
/// Writes record `seq` into `out` (out.size() == shape.length(seq)).
void fill_record(std::uint64_t seq, std::span<std::byte> out);
/// Writes record `seq` to the ring (unpublished).
WriteStatus write_record(RingProducer& producer, std::uint64_t seq, RecordShape shape);
/// Checks a record is exactly record `expected_seq`; empty string if so, else
/// what is wrong.
std::string check_record(const Record& record, std::uint64_t expected_seq, RecordShape shape);

}  // namespace gatehouse::shm::testing
