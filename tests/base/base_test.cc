// gw::base: what every gateway process parses from the supervisor and the
// clock they compare across processes.
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/base/child_process_args.h"
#include "gatehouse/base/clock.h"

namespace gatehouse {
namespace {

ChildArgs parse(std::vector<std::string> words) {
  std::vector<char*> argv;
  static std::string program = "gatehouse-test";
  argv.push_back(program.data());
  for (auto& w : words) argv.push_back(w.data());
  return parse_child_args(static_cast<int>(argv.size()), argv.data());
}

TEST(ChildArgs, EveryArgumentTheSupervisorPasses) {
  const ChildArgs a = parse({"--segment", "gatehouse-x", "--index", "3", "--doorbell", "7",
                             "--peer-doorbells", "8,9", "--listen-fds", "10"});
  EXPECT_EQ(a.segment, "gatehouse-x");
  EXPECT_EQ(a.index, 3u);
  EXPECT_EQ(a.doorbell, 7);
  EXPECT_EQ(a.peer_doorbells, (std::vector<int>{8, 9}));
  EXPECT_EQ(a.listen_fds, (std::vector<int>{10}));
}

TEST(ChildArgs, MistakesAreRefusedByName) {
  EXPECT_THROW(parse({"--index", "1"}), std::invalid_argument);  // no --segment
  EXPECT_THROW(parse({"--segment"}), std::invalid_argument);     // no value
  EXPECT_THROW(parse({"--segment", "s", "--colour", "red"}), std::invalid_argument);
}

TEST(FdList, ParsesCommaSeparatedDescriptorsAndRefusesGarbage) {
  EXPECT_EQ(parse_fd_list("3"), (std::vector<int>{3}));
  EXPECT_EQ(parse_fd_list("3,4,15"), (std::vector<int>{3, 4, 15}));
  EXPECT_TRUE(parse_fd_list("").empty());
  EXPECT_THROW(parse_fd_list("3,x"), std::invalid_argument);
  EXPECT_THROW(parse_fd_list("3x"), std::invalid_argument);
  EXPECT_THROW(parse_fd_list("-1"), std::invalid_argument);
}

TEST(Clock, MonotonicNanosecondsNeverGoBack) {
  std::int64_t last = monotonic_ns();
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t now = monotonic_ns();
    EXPECT_GE(now, last);
    last = now;
  }
  EXPECT_GT(last, 0);
}

}  // namespace
}  // namespace gatehouse
