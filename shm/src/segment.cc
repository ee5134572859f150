#include "gatehouse/shm/segment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>

namespace gatehouse::shm {
namespace bip = boost::interprocess;

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

std::string describe(const std::string& name) {
  return "shared-memory segment /dev/shm/" + name;
}

std::uint64_t file_size(const bip::shared_memory_object& shm) {
  bip::offset_t size = 0;
  if (!shm.get_size(size)) return 0;
  return static_cast<std::uint64_t>(size);
}

/// Reads the stable prefix of an existing segment without trusting it beyond
/// what its size allows. Returns false when the object is too small to hold
/// one (a creator killed before truncating it).
struct Prefix {
  std::uint64_t magic = 0;
  std::uint32_t layout_version = 0;
  std::uint32_t state = 0;
  std::int32_t creator_pid = 0;
  std::uint64_t creator_start_ticks = 0;
  std::uint64_t total_bytes = 0;
};

bool read_prefix(const bip::shared_memory_object& shm, Prefix& out) {
  if (file_size(shm) < sizeof(SegmentHeader)) return false;
  bip::mapped_region view(shm, bip::read_only, 0, sizeof(SegmentHeader));
  const auto* h = static_cast<const SegmentHeader*>(view.get_address());
  out.magic = h->magic.load(std::memory_order_acquire);
  out.layout_version = h->layout_version;
  out.state = h->state.load(std::memory_order_acquire);
  out.creator_pid = h->creator_pid;
  out.creator_start_ticks = h->creator_start_ticks;
  out.total_bytes = h->total_bytes;
  return true;
}

/// A segment another user owns is never used or removed: on a shared host it
/// could be a squatter's, laid out to be read by us.
void refuse_foreign(const std::string& name, const bip::shared_memory_object& shm) {
  struct stat st {};
  if (::fstat(shm.get_mapping_handle().handle, &st) != 0) {
    throw SegmentError(describe(name) + ": cannot stat: " + std::strerror(errno));
  }
  if (st.st_uid != ::geteuid()) {
    throw SegmentError(describe(name) + " belongs to uid " + std::to_string(st.st_uid) +
                       ", not to this user (uid " + std::to_string(::geteuid()) +
                       "); refusing it (another instance name, or remove it as its owner)");
  }
}

}  // namespace

std::uint64_t process_start_ticks(pid_t pid) noexcept {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // The command name (field 2) may contain spaces and ')'; fields resume
  // after the last ')'. starttime is field 22, the 20th after the name.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  for (int i = 0; i < 20 && fields >> field; ++i) {
  }
  try {
    return std::stoull(field);
  } catch (...) {
    return 0;
  }
}

bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  const std::uint64_t now = process_start_ticks(pid);
  // A zombie or a pid we cannot read still counts as alive only if its start
  // time matches; a reused pid has a later start time.
  return now != 0 && now == start_ticks;
}

struct Segment::Impl {
  std::string name;
  bip::shared_memory_object shm;
  bip::mapped_region mapping;
  bool owner = false;

  SegmentHeader* header() const { return static_cast<SegmentHeader*>(mapping.get_address()); }
  ~Impl() {
    if (owner) bip::shared_memory_object::remove(name.c_str());
  }
};

Segment::Segment(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

bool Segment::remove(const std::string& name) noexcept {
  return bip::shared_memory_object::remove(name.c_str());
}

Segment Segment::create(const std::string& name, std::uint32_t layout_version,
                        const std::vector<RegionSpec>& regions) {
  if (regions.size() > kMaxRegions) {
    throw SegmentError(describe(name) + ": " + std::to_string(regions.size()) +
                       " regions, at most " + std::to_string(kMaxRegions));
  }

  // 1. A segment of this name already there: refuse a live owner's, remove a
  //    dead one's.
  try {
    bip::shared_memory_object existing(bip::open_only, name.c_str(), bip::read_only);
    refuse_foreign(name, existing);
    Prefix p;
    if (read_prefix(existing, p) && p.magic != 0 && p.magic != kSegmentMagic) {
      throw SegmentError(describe(name) +
                         " exists and is not a Gatehouse segment; "
                         "refusing to remove it");
    }
    if (p.magic == kSegmentMagic && process_alive(p.creator_pid, p.creator_start_ticks)) {
      throw SegmentError(describe(name) + " is in use by live gateway pid " +
                         std::to_string(p.creator_pid) + " (another instance with the same name?)");
    }
    bip::shared_memory_object::remove(name.c_str());
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() != bip::not_found_error) {
      throw SegmentError(describe(name) + ": cannot inspect existing segment: " + e.what());
    }
  }

  // 2. Lay out the regions after the header.
  SegmentHeader layout{};
  std::size_t offset = round_up(sizeof(SegmentHeader), kRegionAlignment);
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const RegionSpec& r = regions[i];
    if (r.name.empty() || r.name.size() >= kRegionNameBytes) {
      throw SegmentError(describe(name) + ": bad region name '" + r.name + "'");
    }
    std::memcpy(layout.regions[i].name, r.name.data(), r.name.size());
    layout.regions[i].offset = offset;
    layout.regions[i].bytes = r.bytes;
    offset = round_up(offset + r.bytes, kRegionAlignment);
  }
  const std::size_t total = offset;

  // 3. Create exclusively, 0600, and reserve every page now.
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  try {
    bip::permissions perms;
    perms.set_permissions(0600);
    impl->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, perms);
    impl->owner = true;
    const int fd = impl->shm.get_mapping_handle().handle;
    ::fchmod(fd, 0600);  // whatever the umask was
    impl->shm.truncate(static_cast<bip::offset_t>(total));
    if (const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(total)); rc != 0) {
      throw SegmentError(describe(name) + ": cannot reserve " + std::to_string(total) +
                         " bytes: " + std::strerror(rc) + " (is /dev/shm full or too small?)");
    }
    impl->mapping = bip::mapped_region(impl->shm, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    throw SegmentError(describe(name) + ": cannot create: " + e.what());
  }

  // 4. Header identity first (so a crash from here on is recognisable as a
  //    half-initialised Gatehouse segment), then regions, then ready.
  auto* h = new (impl->mapping.get_address()) SegmentHeader{};
  h->layout_version = layout_version;
  h->creator_pid = ::getpid();
  h->creator_start_ticks = process_start_ticks(::getpid());
  h->created_unix_ns =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  h->total_bytes = total;
  h->region_count = static_cast<std::uint32_t>(regions.size());
  std::memcpy(h->regions, layout.regions, sizeof layout.regions);
  h->magic.store(kSegmentMagic, std::memory_order_release);

  auto* base = static_cast<std::byte*>(impl->mapping.get_address());
  for (std::size_t i = 0; i < regions.size(); ++i) {
    if (regions[i].format) {
      regions[i].format({base + h->regions[i].offset, h->regions[i].bytes});
    }
  }
  h->state.store(static_cast<std::uint32_t>(SegmentState::kReady), std::memory_order_release);
  return Segment(std::move(impl));
}

Segment Segment::attach(const std::string& name, std::uint32_t layout_version) {
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  try {
    impl->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) {
      throw SegmentError(describe(name) + " does not exist (is the supervisor running?)");
    }
    throw SegmentError(describe(name) + ": cannot open: " + e.what());
  }
  refuse_foreign(name, impl->shm);
  Prefix p;
  if (!read_prefix(impl->shm, p) || p.magic == 0) {
    throw SegmentError(describe(name) +
                       " is half-initialised (its creator has not written "
                       "the header yet, or died doing so)");
  }
  if (p.magic != kSegmentMagic) {
    throw SegmentError(describe(name) + " is not a Gatehouse segment (bad magic)");
  }
  if (p.layout_version != layout_version) {
    throw SegmentError(describe(name) + " has layout version " + std::to_string(p.layout_version) +
                       "; this binary speaks version " + std::to_string(layout_version) +
                       " and refuses to attach");
  }
  if (p.state != static_cast<std::uint32_t>(SegmentState::kReady)) {
    const bool alive = process_alive(p.creator_pid, p.creator_start_ticks);
    throw SegmentError(describe(name) + " is half-initialised: creator pid " +
                       std::to_string(p.creator_pid) +
                       (alive ? " is still formatting it" : " died before finishing"));
  }
  if (file_size(impl->shm) < p.total_bytes) {
    throw SegmentError(describe(name) + " is shorter than its header says");
  }
  try {
    impl->mapping =
        bip::mapped_region(impl->shm, bip::read_write, 0, static_cast<std::size_t>(p.total_bytes));
  } catch (const bip::interprocess_exception& e) {
    throw SegmentError(describe(name) + ": cannot map: " + e.what());
  }
  return Segment(std::move(impl));
}

std::span<std::byte> Segment::region(std::string_view region_name) const {
  const SegmentHeader& h = header();
  // The directory is in shared memory: the bounds are this process's mapping,
  // not the header's total_bytes, and every entry is read once.
  const std::uint64_t mapped = impl_->mapping.get_size();
  const std::uint32_t count = h.region_count;
  for (std::uint32_t i = 0; i < count && i < kMaxRegions; ++i) {
    const RegionEntry& e = h.regions[i];
    if (region_name == std::string_view(e.name, ::strnlen(e.name, kRegionNameBytes))) {
      const std::uint64_t offset = e.offset;
      const std::uint64_t bytes = e.bytes;
      if (offset % kRegionAlignment != 0 || offset > mapped || bytes > mapped - offset) {
        throw SegmentError(describe(impl_->name) + ": region '" + std::string(region_name) +
                           "' (offset " + std::to_string(offset) + ", " + std::to_string(bytes) +
                           " bytes) is not a page-aligned range inside the " +
                           std::to_string(mapped) + " mapped bytes");
      }
      return {static_cast<std::byte*>(impl_->mapping.get_address()) + offset, bytes};
    }
  }
  throw SegmentError(describe(impl_->name) + " has no region '" + std::string(region_name) + "'");
}

bool Segment::has_region(std::string_view region_name) const noexcept {
  try {
    (void)region(region_name);
    return true;
  } catch (const SegmentError&) {
    return false;
  }
}

const SegmentHeader& Segment::header() const noexcept {
  return *impl_->header();
}
const std::string& Segment::name() const noexcept {
  return impl_->name;
}
bool Segment::owner() const noexcept {
  return impl_->owner;
}
void Segment::disown() noexcept {
  impl_->owner = false;
}

}  // namespace gatehouse::shm
