// Segment: the one POSIX shared-memory object of a gateway instance
// (/dev/shm/<name>), created by its owner (the supervisor) and attached by
// every other process.
//
// Layout:
//
//   +------------------------------+ 0
//   | SegmentHeader                |  stable prefix (magic .. total_bytes)
//   |   stable prefix              |  never changes between layout versions,
//   |   region directory           |  so any build can say why it refuses
//   +------------------------------+ page aligned
//   | region 0                     |  each region page aligned, found by name
//   +------------------------------+
//   | region 1 ...                 |
//   +------------------------------+ total_bytes
//
// Creation is a small protocol: the owner creates the object exclusively
// (0600), reserves every page (posix_fallocate, so a full /dev/shm fails the
// start instead of SIGBUS-ing a process later), writes magic, version and its
// identity, lays out and formats the regions, and only then stores
// state = kReady (release). An attacher checks size, magic, version and
// state in that order and fails at once with a message that says which; it
// never waits. A segment whose creator is dead is stale: the next owner
// removes it and starts afresh.
#pragma once

#include <sys/types.h>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::shm {

inline constexpr std::uint64_t kSegmentMagic = 0x4741'5445'484f'5553ull;  // "GATEHOUS"
inline constexpr std::size_t kMaxRegions = 128;
inline constexpr std::size_t kRegionNameBytes = 48;
inline constexpr std::size_t kRegionAlignment = 4096;

enum class SegmentState : std::uint32_t { kInitialising = 0, kReady = 1 };

struct RegionEntry {
  char name[kRegionNameBytes];  ///< NUL-terminated
  std::uint64_t offset;         ///< from the segment start, page aligned
  std::uint64_t bytes;
};

struct SegmentHeader {
  // --- stable prefix: identical in every layout version ---
  std::atomic<std::uint64_t> magic;
  std::uint32_t layout_version;
  std::atomic<std::uint32_t> state;  ///< SegmentState
  std::int32_t creator_pid;
  std::uint32_t reserved0;
  std::uint64_t creator_start_ticks;  ///< /proc/<pid>/stat starttime (pid reuse check)
  std::uint64_t created_unix_ns;
  std::uint64_t total_bytes;
  // --- version-specific ---
  std::uint32_t region_count;
  std::uint32_t reserved1;
  RegionEntry regions[kMaxRegions];
};

/// A region the owner lays out at creation: `bytes` of zeroed memory handed
/// to `format` (which may be empty) before the segment becomes ready.
struct RegionSpec {
  std::string name;
  std::size_t bytes;
  std::function<void(std::span<std::byte>)> format;
};

/// Every failure to create or attach; what() names the segment and the cause.
class SegmentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Segment {
 public:
  /// Creates the segment as its owner. A stale segment of the same name (its
  /// creator dead) is removed first; a live one is refused. The owner removes
  /// the segment from /dev/shm when destroyed unless disown() was called.
  /// `layout_version` is the user's version of everything it puts in the
  /// regions (and of this header's version-specific part): shm cannot see
  /// what it carries, so its user versions it (the gateway: contract/layout.h).
  static Segment create(const std::string& name, std::uint32_t layout_version,
                        const std::vector<RegionSpec>& regions);
  /// Maps an existing, ready segment of `layout_version`; any other version
  /// is refused with a message naming both.
  static Segment attach(const std::string& name, std::uint32_t layout_version);
  /// Removes the name from /dev/shm (mappings stay valid). True if it existed.
  static bool remove(const std::string& name) noexcept;

  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  /// The region called `name`; throws SegmentError when there is none.
  std::span<std::byte> region(std::string_view name) const;
  bool has_region(std::string_view name) const noexcept;
  const SegmentHeader& header() const noexcept;
  const std::string& name() const noexcept;
  bool owner() const noexcept;
  /// Keeps the segment in /dev/shm after this owner is destroyed.
  void disown() noexcept;

 private:
  struct Impl;
  explicit Segment(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

/// The kernel's start time of `pid` in clock ticks since boot, or 0 when the
/// process does not exist. Together with the pid it identifies a process.
std::uint64_t process_start_ticks(pid_t pid) noexcept;

/// True when `pid` is alive and started at `start_ticks`.
bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept;

}  // namespace gatehouse::shm
