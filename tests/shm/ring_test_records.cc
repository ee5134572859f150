#include "ring_test_records.h"

#include <cstring>

namespace gatehouse::shm::testing {
namespace {

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

std::byte body_byte(std::uint64_t seq, std::size_t i) {
  return static_cast<std::byte>((seq * 131 + i * 7) & 0xff);
}

}  // namespace

std::size_t RecordShape::length(std::uint64_t seq) const {
  if (fixed) return max_length;
  const std::uint64_t h = mix(seq);
  switch (h % 8) {
    case 0:
      return 8;
    case 1:
      return max_length;
    default:
      return 8 + static_cast<std::size_t>((h >> 8) % (max_length - 7));
  }
}

std::uint32_t record_type(std::uint64_t seq) {
  return static_cast<std::uint32_t>(seq % 1000);
}

void fill_record(std::uint64_t seq, std::span<std::byte> out) {
  std::memcpy(out.data(), &seq, sizeof seq);
  for (std::size_t i = sizeof seq; i < out.size(); ++i) out[i] = body_byte(seq, i);
}

WriteStatus write_record(RingProducer& producer, std::uint64_t seq, RecordShape shape) {
  const std::size_t length = shape.length(seq);
  WriteStatus status;
  const std::span<std::byte> out = producer.claim(record_type(seq), length, &status);
  if (status != WriteStatus::kOk) return status;
  fill_record(seq, out);
  producer.commit(length);
  return WriteStatus::kOk;
}

std::string check_record(const Record& record, std::uint64_t expected_seq, RecordShape shape) {
  if (record.payload.size() < sizeof(std::uint64_t)) {
    return "record of " + std::to_string(record.payload.size()) + " bytes is too short";
  }
  std::uint64_t seq;
  std::memcpy(&seq, record.payload.data(), sizeof seq);
  if (seq != expected_seq) {
    return "expected seq " + std::to_string(expected_seq) + ", got " + std::to_string(seq);
  }
  if (record.type != record_type(seq)) return "seq " + std::to_string(seq) + ": wrong type";
  if (record.payload.size() != shape.length(seq)) {
    return "seq " + std::to_string(seq) + ": wrong length " + std::to_string(record.payload.size());
  }
  for (std::size_t i = sizeof seq; i < record.payload.size(); ++i) {
    if (record.payload[i] != body_byte(seq, i)) {
      return "seq " + std::to_string(seq) + ": corrupt byte " + std::to_string(i);
    }
  }
  return {};
}

}  // namespace gatehouse::shm::testing
