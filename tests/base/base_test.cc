// gw::base: what every gateway process parses from the supervisor and the
// clock they compare across processes, the escaping of client text in logs.
#include <chrono>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <sched.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gatehouse/base/child_process_args.h"
#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/base/log_fields.h"
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

TEST(LogFields, KeyValueWordsAreFieldsAndQuotedClientTextIsNot) {
  using Fields = std::vector<std::pair<std::string_view, std::string_view>>;
  EXPECT_EQ(log_fields("kick conn=0x1a remote=10.0.0.7:5100 user=1001 reason=bad_seq ms=12"),
            (Fields{{"conn", "0x1a"},
                    {"remote", "10.0.0.7:5100"},
                    {"user", "1001"},
                    {"reason", "bad_seq"},
                    {"ms", "12"}}));
  // A client string is logged quoted (log_text() escapes its own quotes):
  // what it says is never a field, however it tries.
  EXPECT_EQ(log_fields(R"(login refused conn=0x2 user=7 open_udid 'x user=1 reason=\' user=2')"),
            (Fields{{"conn", "0x2"}, {"user", "7"}}));
  EXPECT_EQ(log_fields(R"(admin request "kick user=5" by uid=0)"), (Fields{{"uid", "0"}}));
  // Not fields: no value, no key, a key that is not a lowercase name, '=' in a word's middle.
  EXPECT_EQ(log_fields("a= =b Key=1 9x=2 -k=3 x-y=4 closing=ok"), (Fields{{"closing", "ok"}}));
  EXPECT_EQ(log_fields(""), Fields{});
  EXPECT_EQ(log_fields(std::string(40, 'k') + "=v"), Fields{}) << "a key over 32 bytes";
}

/// What a process that systemd connected to the journal logs: a forked
/// child in a mount namespace of its own (the test runs as root, as CI
/// does), with a fresh /run where, when `journald` is true, the test's own
/// datagram socket stands at journald's native path. The child's stderr is a
/// file that JOURNAL_STREAM names. Returns each datagram the socket got
/// ("KEY=value" lines), then "stderr:" and what went to stderr.
std::vector<std::string> logged_to_journal(bool journald) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gatehouse-log-" + std::to_string(::getpid()) + ".txt");
  const pid_t child = ::fork();
  if (child == 0) {
    std::FILE* err = std::fopen((path.string() + ".err").c_str(), "w");
    ::dup2(::fileno(err), STDERR_FILENO);
    std::FILE* out = std::fopen(path.c_str(), "w");
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") != 0) {
      std::fprintf(out, "no mount namespace: %s\n", std::strerror(errno));
      ::_exit(2);
    }
    int journal = -1;
    if (journald) {
      std::filesystem::create_directories("/run/systemd/journal");
      journal = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof addr.sun_path, "/run/systemd/journal/socket");
      if (::bind(journal, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(3);
    }
    struct stat st {};
    ::fstat(STDERR_FILENO, &st);
    ::setenv("JOURNAL_STREAM",
             (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)).c_str(), 1);
    init_logging("journal-test", spdlog::level::info);
    spdlog::info("close conn={:#x} user={} reason={}", 0x1a, 1001, "bad_seq");
    spdlog::warn("slow");
    spdlog::error("broken");
    spdlog::debug("not shown");
    spdlog::default_logger()->flush();
    char datagram[4096];
    ssize_t n = 0;
    while (journal >= 0 && (n = ::recv(journal, datagram, sizeof datagram, 0)) > 0) {
      std::fwrite(datagram, 1, static_cast<std::size_t>(n), out);
      std::fputs("--\n", out);
    }
    std::fclose(out);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::vector<std::string> entries;
  std::ifstream in(path);
  std::string entry;
  for (std::string line; std::getline(in, line);) {
    if (line == "--") {
      entries.push_back(entry);
      entry.clear();
    } else {
      entry += line + "\n";
    }
  }
  if (!entry.empty()) entries.push_back(entry);  // the child's complaint, if any
  std::ifstream err(path.string() + ".err");
  entries.push_back("stderr:" + std::string((std::istreambuf_iterator<char>(err)), {}));
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + ".err");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << entries.front();
  return entries;
}

// Under systemd each line reaches the journal with its priority
// (`journalctl -p err` shows the errors) and its key=value words as fields
// (`journalctl GATEHOUSE_USER=1001`).
TEST(Logging, TheJournalGetsEachLinesPriorityAndFields) {
  const std::vector<std::string> entries = logged_to_journal(true);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0],
            "MESSAGE=info [journal-test] close conn=0x1a user=1001 reason=bad_seq\n"
            "PRIORITY=6\n"
            "GATEHOUSE_PROCESS=journal-test\n"
            "GATEHOUSE_CONN=0x1a\n"
            "GATEHOUSE_USER=1001\n"
            "GATEHOUSE_REASON=bad_seq\n"
            "SYSLOG_IDENTIFIER=base_test\n");
  EXPECT_EQ(entries[1],
            "MESSAGE=warning [journal-test] slow\nPRIORITY=4\nGATEHOUSE_PROCESS=journal-test\n"
            "SYSLOG_IDENTIFIER=base_test\n");
  EXPECT_EQ(entries[2],
            "MESSAGE=error [journal-test] broken\nPRIORITY=3\nGATEHOUSE_PROCESS=journal-test\n"
            "SYSLOG_IDENTIFIER=base_test\n");
  EXPECT_EQ(entries[3], "stderr:");
}

// A journal that cannot be reached loses the fields, not the lines: they go
// to stderr (the journal's stream) with their priority.
TEST(Logging, LinesTheJournalRefusesGoToStderr) {
  const std::vector<std::string> entries = logged_to_journal(false);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0],
            "stderr:<6>info [journal-test] close conn=0x1a user=1001 reason=bad_seq\n"
            "<4>warning [journal-test] slow\n"
            "<3>error [journal-test] broken\n");
}

// Elsewhere: a timestamp and the level as words, on stderr.
TEST(Logging, OutsideSystemdLinesGoToStderrWithATimestamp) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gatehouse-log-" + std::to_string(::getpid()) + ".txt");
  const pid_t child = ::fork();
  if (child == 0) {
    std::FILE* file = std::fopen(path.c_str(), "w");
    ::dup2(::fileno(file), STDERR_FILENO);
    ::unsetenv("JOURNAL_STREAM");
    init_logging("plain-test", spdlog::level::info);
    spdlog::warn("slow");
    spdlog::default_logger()->flush();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::ifstream in(path);
  const std::string plain((std::istreambuf_iterator<char>(in)), {});
  std::filesystem::remove(path);
  EXPECT_EQ(plain.find('<'), std::string::npos) << plain;
  EXPECT_NE(plain.find("warning [plain-test] slow\n"), std::string::npos) << plain;
  EXPECT_EQ(plain.substr(0, 2), "20") << "a timestamp first: " << plain;
}

}  // namespace
}  // namespace gatehouse
