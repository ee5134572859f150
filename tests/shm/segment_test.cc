// Segment: create/attach, permissions, page reservation, and every way an
// attach or a create must refuse, fast and with a message that says why.
#include "gatehouse/shm/segment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gatehouse::shm {
namespace {

using ::testing::HasSubstr;

std::string unique_name() {
  static std::atomic<int> counter{0};
  return "gatehouse-test-seg-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const SegmentError& e) {
    return e.what();
  }
  return "(no error)";
}

/// Writes into a segment's header behind the library's back, as a crash or
/// another build would leave it.
void poke_header(const std::string& name, auto&& edit) {
  const int fd = ::shm_open(("/" + name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  void* p = ::mmap(nullptr, sizeof(SegmentHeader), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  edit(*static_cast<SegmentHeader*>(p));
  ::munmap(p, sizeof(SegmentHeader));
  ::close(fd);
}

/// The layout version these tests' segments claim (shm versions nothing of
/// its own: its user does).
constexpr std::uint32_t kTestLayout = 7;

std::vector<RegionSpec> two_regions() {
  return {{"alpha", 100, [](std::span<std::byte> r) { std::memset(r.data(), 0xab, r.size()); }},
          {"beta", 10000, {}}};
}

TEST(Segment, CreatedRegionsAreSeenByAnAttacher) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  EXPECT_TRUE(owner.owner());
  Segment other = Segment::attach(name, kTestLayout);
  EXPECT_FALSE(other.owner());
  const auto alpha = other.region("alpha");
  ASSERT_EQ(alpha.size(), 100u);
  EXPECT_EQ(alpha[99], std::byte{0xab});
  EXPECT_EQ(other.region("beta").size(), 10000u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(other.region("beta").data()) % kRegionAlignment, 0u);
  other.region("beta")[5] = std::byte{7};
  EXPECT_EQ(owner.region("beta")[5], std::byte{7}) << "same memory";
  EXPECT_THAT(error_of([&] { (void)other.region("gamma"); }), HasSubstr("no region 'gamma'"));
  EXPECT_FALSE(other.has_region("gamma"));

  const SegmentHeader& h = other.header();
  EXPECT_EQ(h.layout_version, kTestLayout);
  EXPECT_EQ(h.creator_pid, ::getpid());
  EXPECT_EQ(h.creator_start_ticks, process_start_ticks(::getpid()));
  EXPECT_EQ(h.state.load(), static_cast<std::uint32_t>(SegmentState::kReady));
}

TEST(Segment, ARegionEntryOutsideTheMappingIsRefusedWithoutOverflow) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  Segment other = Segment::attach(name, kTestLayout);
  // offset + bytes wraps to a small number: what a sum would let through.
  poke_header(name, [](SegmentHeader& h) { h.regions[1].bytes = ~std::uint64_t{0} - 4095; });
  EXPECT_THAT(error_of([&] { (void)other.region("beta"); }),
              HasSubstr("is not a page-aligned range inside the"));
  poke_header(name, [](SegmentHeader& h) {
    h.regions[1].bytes = 10000;
    h.regions[1].offset += 8;  // inside, but a ring's atomics would be misaligned
  });
  EXPECT_THAT(error_of([&] { (void)other.region("beta"); }), HasSubstr("region 'beta' (offset"));
  poke_header(name, [](SegmentHeader& h) { h.total_bytes = ~std::uint64_t{0}; });
  poke_header(name, [](SegmentHeader& h) { h.regions[1].offset = std::uint64_t{1} << 40; });
  EXPECT_FALSE(other.has_region("beta")) << "the mapping bounds it, not the header's total";
}

TEST(Segment, IsMode0600WhateverTheUmask) {
  const std::string name = unique_name();
  const mode_t old = ::umask(0);
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Segment, ReservesEveryPageUpFront) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, {{"big", 8 << 20, {}}});
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_GE(std::uint64_t(st.st_blocks) * 512, owner.header().total_bytes)
      << "pages not reserved: a full /dev/shm would SIGBUS a process later";
}

TEST(Segment, OwnerRemovesItUnlessDisowned) {
  const std::string name = unique_name();
  { Segment owner = Segment::create(name, kTestLayout, two_regions()); }
  EXPECT_THAT(error_of([&] { Segment::attach(name, kTestLayout); }), HasSubstr("does not exist"));
  {
    Segment owner = Segment::create(name, kTestLayout, two_regions());
    owner.disown();
  }
  EXPECT_NO_THROW(Segment::attach(name, kTestLayout));
  EXPECT_TRUE(Segment::remove(name));
}

TEST(Segment, AttachToAnotherLayoutVersionIsRefused) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  poke_header(name, [](SegmentHeader& h) { h.layout_version = kTestLayout + 1; });
  EXPECT_THAT(error_of([&] { Segment::attach(name, kTestLayout); }),
              HasSubstr("layout version " + std::to_string(kTestLayout + 1)));
}

TEST(Segment, AnotherUsersSegmentIsNeitherUsedNorReplaced) {
  // Another local user squats the name first (root plays them: chown).
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a segment another user's";
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  owner.disown();
  const int fd = ::shm_open(("/" + name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fchown(fd, 65534, 65534), 0);
  ::close(fd);
  EXPECT_THAT(error_of([&] { Segment::attach(name, kTestLayout); }),
              HasSubstr("belongs to uid 65534"));
  EXPECT_THAT(error_of([&] { Segment::create(name, kTestLayout, two_regions()); }),
              HasSubstr("belongs to uid 65534"));
  ::shm_unlink(("/" + name).c_str());
}

TEST(Segment, AttachToAForeignObjectIsRefused) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  poke_header(name, [](SegmentHeader& h) { h.magic.store(0x1234); });
  EXPECT_THAT(error_of([&] { Segment::attach(name, kTestLayout); }),
              HasSubstr("not a Gatehouse segment"));
  // ... and the owner will not delete something that is not ours.
  EXPECT_THAT(error_of([&] { Segment::create(name, kTestLayout, two_regions()); }),
              HasSubstr("not a Gatehouse segment"));
}

TEST(Segment, AttachToAHalfInitialisedSegmentFailsAtOnce) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  poke_header(name, [](SegmentHeader& h) { h.state.store(0); });
  EXPECT_THAT(error_of([&] { Segment::attach(name, kTestLayout); }),
              HasSubstr("half-initialised: creator pid " + std::to_string(::getpid()) +
                        " is still formatting it"));

  // An object its creator never even sized.
  const std::string empty = unique_name();
  const int fd = ::shm_open(("/" + empty).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_THAT(error_of([&] { Segment::attach(empty, kTestLayout); }),
              HasSubstr("half-initialised"));
  // Stale, so an owner may take the name over.
  EXPECT_NO_THROW(Segment::create(empty, kTestLayout, two_regions()));
}

TEST(Segment, SecondOwnerIsRefusedWhileTheFirstLives) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kTestLayout, two_regions());
  EXPECT_THAT(error_of([&] { Segment::create(name, kTestLayout, two_regions()); }),
              HasSubstr("in use by live gateway pid " + std::to_string(::getpid())));
  EXPECT_NO_THROW(Segment::attach(name, kTestLayout))
      << "the refused create must not have removed it";
}

TEST(Segment, StaleSegmentOfACrashedOwnerIsReplaced) {
  const std::string name = unique_name();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Segment owner = Segment::create(name, kTestLayout, two_regions());
    ::kill(::getpid(), SIGKILL);  // crash: no destructor runs
  }
  int status;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  {
    Segment left = Segment::attach(name, kTestLayout);  // the crashed run's segment is still there
    EXPECT_EQ(left.header().creator_pid, child);
    EXPECT_FALSE(process_alive(child, left.header().creator_start_ticks));
  }
  Segment fresh = Segment::create(name, kTestLayout, two_regions());
  EXPECT_EQ(fresh.header().creator_pid, ::getpid());
}

TEST(Segment, BadRegionNamesAreRejected) {
  EXPECT_THAT(error_of([] {
                Segment::create(unique_name(), kTestLayout, {{std::string(60, 'x'), 10, {}}});
              }),
              HasSubstr("bad region name"));
}

TEST(ProcessIdentity, KnowsLiveAndDeadProcesses) {
  EXPECT_TRUE(process_alive(::getpid(), process_start_ticks(::getpid())));
  EXPECT_FALSE(process_alive(::getpid(), process_start_ticks(::getpid()) + 1)) << "pid reuse";
  EXPECT_EQ(process_start_ticks(-5), 0u);
  EXPECT_FALSE(process_alive(0, 0));
}

}  // namespace
}  // namespace gatehouse::shm
