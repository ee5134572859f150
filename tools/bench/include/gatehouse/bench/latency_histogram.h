// LatencyHistogram: a log-linear histogram in the style of HdrHistogram, for
// per-message latencies in microseconds.
//
// Values below 256 have a bucket each; above, every power of two is split
// into 128 equal buckets, so a bucket is never wider than 1/128 of its values
// (better than two significant digits) while the whole range up to 2^48 us
// fits in ~5400 counters (43 KiB). Recording is one shift and one increment,
// cheap enough for every message of a million-message-per-second run.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace gatehouse::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBucketBits;  // 128
  static constexpr int kMaxValueBits = 48;
  /// Larger values are recorded as this one (and the exact max is still kept).
  static constexpr std::uint64_t kMaxTrackable = (std::uint64_t{1} << kMaxValueBits) - 1;
  static constexpr std::size_t kBucketCount =
      static_cast<std::size_t>(kMaxValueBits - kSubBucketBits + 1) * kSubBuckets;

  /// The bucket of `value` (clamped to kMaxTrackable).
  static constexpr std::size_t bucket_of(std::uint64_t value) noexcept {
    value = std::min(value, kMaxTrackable);
    if (value < 2 * kSubBuckets) return static_cast<std::size_t>(value);
    const int msb = 63 - std::countl_zero(value);
    const int shift = msb - kSubBucketBits;
    return static_cast<std::size_t>(shift + 1) * kSubBuckets + (value >> shift) - kSubBuckets;
  }
  /// The smallest and largest value that land in bucket `index`.
  static constexpr std::uint64_t bucket_low(std::size_t index) noexcept {
    if (index < 2 * kSubBuckets) return index;
    const std::size_t shift = index / kSubBuckets - 1;
    return (index % kSubBuckets + kSubBuckets) << shift;
  }
  static constexpr std::uint64_t bucket_high(std::size_t index) noexcept {
    if (index < 2 * kSubBuckets) return index;
    const std::size_t shift = index / kSubBuckets - 1;
    return ((index % kSubBuckets + kSubBuckets + 1) << shift) - 1;
  }

  void record(std::uint64_t value) noexcept {
    ++counts_[bucket_of(value)];
    ++count_;
    sum_ += value;
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }

  void merge(const LatencyHistogram& other) noexcept {
    for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
  }

  /// The value at or below which `percentile` percent of the recorded values
  /// lie, reported as the top of its bucket (as HdrHistogram does, so a
  /// percentile never understates), but never above the exact max nor below
  /// the exact min. 0 when empty.
  std::uint64_t value_at_percentile(double percentile) const noexcept {
    if (count_ == 0) return 0;
    percentile = std::clamp(percentile, 0.0, 100.0);
    // The rank of the value asked for, 1-based: ceil(p% of count), at least 1.
    // The slack keeps 99.9% of 1000 at rank 999: 99.9 is not exact in binary.
    const double exact = percentile * static_cast<double>(count_) / 100.0 - 1e-9;
    auto rank = static_cast<std::uint64_t>(exact);
    if (static_cast<double>(rank) < exact) ++rank;
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    // The highest occupied bucket is reported as the exact max (its top may
    // lie above it, or below it for values past kMaxTrackable).
    const std::size_t top = bucket_of(max_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < top; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::max(bucket_high(i), min());
    }
    return max_;
  }

 private:
  std::array<std::uint64_t, kBucketCount> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace gatehouse::bench
