// The process_* metrics' sources: /proc/PID/stat and limits as the kernel
// writes them, and this test's own process read live.
#include "gatehouse/supervisor/process_stats.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>

#include <gtest/gtest.h>

namespace gatehouse::supervisor {
namespace {

TEST(ProcStat, ReadsTheFieldsAfterTheCommandName) {
  // A command name with spaces and a ')' of its own: fields count from the
  // last ')'.
  const auto stat = parse_proc_stat(
      "4242 (gatehouse) w) x) S 1 4242 4242 0 -1 4194560 1364 0 0 0 "
      "175 42 0 0 20 0 3 0 123456 250000000 2048 18446744073709551615 1 1 0 0 0 0 0 4096 "
      "0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->user_ticks, 175u);
  EXPECT_EQ(stat->system_ticks, 42u);
  EXPECT_EQ(stat->start_ticks, 123456u);
  EXPECT_EQ(stat->rss_pages, 2048u);
}

TEST(ProcStat, RefusesWhatIsNotAStatLine) {
  EXPECT_FALSE(parse_proc_stat("").has_value());
  EXPECT_FALSE(parse_proc_stat("1 (short) S 1 2 3").has_value());
  EXPECT_FALSE(parse_proc_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0 0 20 0 1 0 9 9 9").has_value());
}

TEST(MaxOpenFiles, TheSoftLimit) {
  const char* limits =
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max cpu time              unlimited            unlimited            seconds   \n"
      "Max open files            1024                 524288               files     \n";
  EXPECT_EQ(parse_max_open_files(limits), 1024u);
  EXPECT_FALSE(parse_max_open_files("Max open files  unlimited  unlimited  files\n").has_value());
  EXPECT_FALSE(parse_max_open_files("Max processes 1 1 processes\n").has_value());
}

TEST(ProcessStats, ThisProcess) {
  const int extra = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const auto before = read_process_stats(::getpid());
  ASSERT_TRUE(before.has_value());
  ::close(extra);
  const auto after = read_process_stats(::getpid());
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->open_fds, before->open_fds - 1);
  EXPECT_GT(before->resident_bytes, 0);
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  ASSERT_TRUE(before->max_fds.has_value());
  EXPECT_EQ(*before->max_fds, static_cast<double>(lim.rlim_cur));
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(before->start_time_seconds, now + 1);
  EXPECT_GT(before->start_time_seconds, now - 3600);  // this test started within the hour
  EXPECT_GE(before->cpu_seconds, 0);
}

TEST(ProcessStats, AGoneProcessHasNone) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_FALSE(read_process_stats(child).has_value());
}

}  // namespace
}  // namespace gatehouse::supervisor
