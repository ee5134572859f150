// gw::base: what every gateway process parses from the supervisor and the
// clock they compare across processes, the escaping of client text in logs.
#include <chrono>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "gatehouse/base/child_process_args.h"
#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/base/log_text.h"
#include "gatehouse/base/rate_limit.h"

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

TEST(LogText, PrintableTextAndUtf8StayAsTheyAre) {
  EXPECT_EQ(log_text("device-42 ABC_xyz"), "device-42 ABC_xyz");
  EXPECT_EQ(log_text("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\xae"),
            "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\xae");
  EXPECT_EQ(log_text(""), "");
}

TEST(LogText, ControlBytesQuotesAndBackslashesAreEscaped) {
  EXPECT_EQ(log_text("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(log_text("x\x1b[31mred\x7f"), "x\\x1b[31mred\\x7f");
  EXPECT_EQ(log_text(std::string_view("\0z", 2)), "\\x00z");
  EXPECT_EQ(log_text(R"(it's "q" \ )"), R"(it\'s \"q\" \\ )");
  // A forged line cannot start a line of its own.
  const std::string forged = log_text("x'\n2026-01-01T00:00:00.000 info  [worker-0] login user=1");
  EXPECT_EQ(forged.find('\n'), std::string::npos);
  EXPECT_EQ(forged.find('\''), forged.find("\\'") + 1);
}

TEST(LogText, InvalidUtf8AndInvisibleControlsBecomeHexBytes) {
  EXPECT_EQ(log_text("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(log_text("\xc3"), "\\xc3");                             // truncated sequence
  EXPECT_EQ(log_text("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(log_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
  EXPECT_EQ(log_text("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // over U+10FFFF
  EXPECT_EQ(log_text("\xc2\x9b"), "\\xc2\\x9b");                    // C1 CSI
  EXPECT_EQ(log_text("a\xe2\x80\xae"), "a\\xe2\\x80\\xae");         // right-to-left override
  EXPECT_EQ(log_text("\xe2\x80\xa8"), "\\xe2\\x80\\xa8");           // line separator
  EXPECT_EQ(log_text("\xc3x"), "\\xc3x");  // resynchronises after a bad byte
}

TEST(LogText, LongTextIsCappedWithTheCountLeftOut) {
  EXPECT_EQ(log_text(std::string(10, 'a'), 10), std::string(10, 'a'));
  EXPECT_EQ(log_text(std::string(11, 'a'), 10), std::string(10, 'a') + "...(+1 bytes)");
  const std::string big(std::size_t{60} * 1024, 'A');
  const std::string out = log_text(big);
  EXPECT_EQ(out, std::string(kLogTextMax, 'A') + "...(+" +
                     std::to_string(big.size() - kLogTextMax) + " bytes)");
  // An escape is never cut: "\n" would take 2 bytes where 1 is left.
  EXPECT_EQ(log_text("abc\n", 4), "abc...(+1 bytes)");
  // Neither is a character: 3 bytes of "日" do not fit in 2.
  EXPECT_EQ(log_text("a\xe6\x97\xa5", 3), "a...(+3 bytes)");
  // Escaped control bytes count toward the cap as they are written.
  const std::string escapes = log_text(std::string(1000, '\x1b'), 40);
  EXPECT_EQ(escapes, [] {
    std::string s;
    for (int i = 0; i < 10; ++i) s += "\\x1b";
    return s + "...(+990 bytes)";
  }());
}

constexpr std::int64_t kSecond = 1'000'000'000;

TEST(LogLimit, OneLinePerIntervalThenTheCountOfTheOthers) {
  LogLimit limit(spdlog::level::warn, "site");
  std::uint64_t suppressed = 99;
  EXPECT_TRUE(limit.admit(5 * kSecond, suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (std::int64_t i = 0; i < 2800; ++i)
    EXPECT_FALSE(limit.admit(5 * kSecond + i * 100'000, suppressed));
  EXPECT_FALSE(limit.admit(6 * kSecond - 1, suppressed));
  EXPECT_TRUE(limit.admit(6 * kSecond, suppressed));
  EXPECT_EQ(suppressed, 2801u);
  EXPECT_TRUE(limit.admit(8 * kSecond, suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(LogLimit, ACountLeftAtTheEndOfAFloodIsOverdueAfterTheInterval) {
  LogLimit limit(spdlog::level::warn, "site", kSecond / 2);
  std::uint64_t suppressed = 0;
  EXPECT_TRUE(limit.admit(0, suppressed));
  EXPECT_FALSE(limit.admit(1, suppressed));
  EXPECT_FALSE(limit.admit(2, suppressed));
  EXPECT_EQ(limit.take_overdue(kSecond / 2 - 1), 0u);
  EXPECT_EQ(limit.take_overdue(kSecond / 2), 2u);
  EXPECT_EQ(limit.take_overdue(2 * kSecond), 0u);  // taken once
  // The flush counts as a line: the next one waits its interval.
  EXPECT_FALSE(limit.admit(kSecond / 2 + 1, suppressed));
}

/// Captures what spdlog writes while it lives.
class CapturedLog {
 public:
  CapturedLog()
      : previous_(spdlog::default_logger()),
        logger_(std::make_shared<spdlog::logger>(
            "captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(out_))) {
    logger_->set_pattern("%l %v");
    spdlog::set_default_logger(logger_);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<spdlog::logger> logger_;
};

TEST(LogLimit, AFloodWritesOneLineAndTheFlushWritesTheRest) {
  CapturedLog log;
  LogLimit limit(spdlog::level::warn, "connection refused: limit reached", 10 * kSecond);
  for (int i = 0; i < 500; ++i)
    limit.log("connection from {} refused: limit {} reached", "10.0.0.1", 3);
  EXPECT_EQ(log.text(), "warning connection from 10.0.0.1 refused: limit 3 reached\n");
  flush_log_limits(monotonic_ns());  // not overdue yet
  EXPECT_EQ(log.text(), "warning connection from 10.0.0.1 refused: limit 3 reached\n");
  flush_log_limits(monotonic_ns() + 11 * kSecond);
  EXPECT_EQ(log.text(),
            "warning connection from 10.0.0.1 refused: limit 3 reached\n"
            "warning connection refused: limit reached (499 similar suppressed)\n");
}

TEST(LogLimit, TheNextLineCarriesTheCount) {
  CapturedLog log;
  LogLimit limit(spdlog::level::info, "refused login", kSecond);
  limit.log("refused {}", 1);
  limit.log("refused {}", 2);
  limit.log("refused {}", 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the interval
  limit.log("refused {}", 4);
  EXPECT_EQ(log.text(), "info refused 1\ninfo refused 4 (2 similar suppressed)\n");
}

}  // namespace
}  // namespace gatehouse

namespace gatehouse {
namespace {

constexpr std::int64_t kSecondNs = 1'000'000'000;

TEST(RateLimit, AFullBucketAdmitsTheBurstAtOnceThenTheRate) {
  const RateLimit limit = RateLimit::per_minute(60, 5);  // one a second, five at once
  std::int64_t tat = 0;
  const std::int64_t t0 = 100 * kSecondNs;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.admit(tat, t0)) << i;
  EXPECT_FALSE(limit.admit(tat, t0)) << "the sixth at once";
  EXPECT_FALSE(limit.admit(tat, t0 + kSecondNs / 2)) << "not refilled yet";
  EXPECT_TRUE(limit.admit(tat, t0 + kSecondNs)) << "one refilled after a second";
  EXPECT_FALSE(limit.admit(tat, t0 + kSecondNs));
  // A long pause refills the whole burst, never more.
  const std::int64_t later = t0 + 3600 * kSecondNs;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.admit(tat, later)) << i;
  EXPECT_FALSE(limit.admit(tat, later));
}

TEST(RateLimit, ARefusalLeavesTheBucketAsItWas) {
  const RateLimit limit = RateLimit::per_minute(60, 1);
  std::int64_t tat = 0;
  ASSERT_TRUE(limit.admit(tat, kSecondNs));
  const std::int64_t before = tat;
  EXPECT_FALSE(limit.admit(tat, kSecondNs));
  EXPECT_EQ(tat, before);
}

TEST(RateLimit, SustainedTrafficAtTheRateIsNeverRefusedAndAboveItIs) {
  const RateLimit limit = RateLimit::per_minute(200, 200);  // the rpm-limit default
  std::int64_t tat = 0;
  const std::int64_t step = 60 * kSecondNs / 200;
  for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(limit.admit(tat, i * step)) << i;
  // 10 % faster than the rate: the burst is spent within ten minutes.
  std::int64_t fast = 0;
  int admitted = 0;
  for (int i = 0; i < 10'000; ++i) admitted += limit.admit(fast, i * step * 9 / 10) ? 1 : 0;
  EXPECT_LT(admitted, 10'000);
  EXPECT_GT(admitted, 9'000 + 150);
}

// wait_ns() says when admit() would succeed: then, and not a nanosecond earlier.
TEST(RateLimit, WaitSaysWhenTheNextUnitIsAdmitted) {
  const RateLimit limit = RateLimit::per_minute(60, 2);  // one a second, two at once
  std::int64_t tat = 0;
  const std::int64_t t0 = 10 * kSecondNs;
  EXPECT_EQ(limit.wait_ns(tat, t0), 0);
  ASSERT_TRUE(limit.admit(tat, t0));
  ASSERT_TRUE(limit.admit(tat, t0));
  const std::int64_t wait = limit.wait_ns(tat, t0);
  EXPECT_EQ(wait, kSecondNs);
  std::int64_t probe = tat;
  EXPECT_FALSE(limit.admit(probe, t0 + wait - 1));
  EXPECT_TRUE(limit.admit(probe, t0 + wait));
  EXPECT_EQ(RateLimit::per_minute(0, 0).wait_ns(tat, t0), 0) << "0: no limit";
}

TEST(RateLimit, BytesCountByWeightAndHugeLimitsDoNotOverflow) {
  const RateLimit bytes = RateLimit::per_minute(6'000, 1'000);  // 100 B/s, 1000 at once
  std::int64_t tat = 0;
  EXPECT_TRUE(bytes.admit(tat, 0, 600));
  EXPECT_TRUE(bytes.admit(tat, 0, 400));
  EXPECT_FALSE(bytes.admit(tat, 0, 1));
  EXPECT_TRUE(bytes.admit(tat, kSecondNs, 100));
  const RateLimit huge = RateLimit::per_minute(4'000'000'000u, 4'000'000'000u);
  std::int64_t t = 0;
  EXPECT_TRUE(huge.admit(t, 0, 4'000'000'000u));
  EXPECT_FALSE(huge.admit(t, 0, 65'535));
  EXPECT_TRUE(RateLimit::per_minute(0, 0).admit(t, 0, ~std::uint64_t{0})) << "0: no limit";
}

/// What a process logs to stderr when `journal_stream` says (or does not
/// say) that stderr is the journal: a forked child, its stderr a file.
std::string logged_with(bool journal_stream) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gatehouse-log-" + std::to_string(::getpid()) + ".txt");
  const pid_t child = ::fork();
  if (child == 0) {
    std::FILE* file = std::fopen(path.c_str(), "w");
    ::dup2(::fileno(file), STDERR_FILENO);
    struct stat st {};
    ::fstat(STDERR_FILENO, &st);
    const std::string stream =
        std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + (journal_stream ? 0 : 1));
    ::setenv("JOURNAL_STREAM", stream.c_str(), 1);
    init_logging("journal-test", spdlog::level::info);
    spdlog::info("started");
    spdlog::warn("slow");
    spdlog::error("broken");
    spdlog::debug("not shown");
    spdlog::default_logger()->flush();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  std::filesystem::remove(path);
  return text;
}

// Under systemd each line carries its syslog priority for journald
// (`journalctl -p err` shows the errors); elsewhere, a timestamp and the
// level as words.
TEST(Logging, TheJournalGetsEachLinesPriority) {
  EXPECT_EQ(logged_with(true),
            "<6>info [journal-test] started\n"
            "<4>warning [journal-test] slow\n"
            "<3>error [journal-test] broken\n");
  const std::string plain = logged_with(false);
  EXPECT_EQ(plain.find('<'), std::string::npos) << plain;
  EXPECT_NE(plain.find("warning [journal-test] slow\n"), std::string::npos) << plain;
  EXPECT_EQ(plain.substr(0, 2), "20") << "a timestamp first: " << plain;
}

}  // namespace
}  // namespace gatehouse
