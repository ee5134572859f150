#include "gatehouse/base/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
// Without it every entry would say CODE_FILE=log.cc: the sink's own line.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gatehouse/base/log_fields.h"

namespace gatehouse {
namespace {

/// The syslog priority of a level (sd-daemon.h's SD_ERR and friends).
int priority_of(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return 2;
    case spdlog::level::err:
      return 3;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::info:
      return 6;
    default:
      return 7;  // debug, trace
  }
}

/// Under systemd: each line goes to journald's native socket with its
/// priority and the line's key=value words as fields of their own
/// (GATEHOUSE_CONN, GATEHOUSE_USER, GATEHOUSE_REASON, ...; log_fields()), and
/// GATEHOUSE_PROCESS naming the process (libsystemd adds SYSLOG_IDENTIFIER,
/// the program's name). Where that socket is missing (libsystemd then drops
/// a line and says it succeeded) or a line is refused (over the journal's
/// size limit), the line goes to stderr, the journal's stream, with its
/// priority as the stream's "<N>" prefix: it loses its fields, never itself.
class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit JournalSink(const std::string& process)
      : process_field_("GATEHOUSE_PROCESS=" + process),
        prefix_(" [" + process + "] "),
        native_(::access("/run/systemd/journal/socket", W_OK) == 0) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    constexpr std::string_view kMessage = "MESSAGE=";
    const std::string_view text(msg.payload.data(), msg.payload.size());
    const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
    message_.assign(kMessage).append(level.data(), level.size()).append(prefix_).append(text);
    priority_.assign("PRIORITY=").push_back(static_cast<char>('0' + priority_of(msg.level)));
    iov_.clear();
    iov_.push_back(io(message_));
    iov_.push_back(io(priority_));
    iov_.push_back(io(process_field_));
    std::size_t n = 0;
    for (const auto& [key, value] : log_fields(text)) {
      if (n == fields_.size()) fields_.emplace_back();
      std::string& field = fields_[n++];
      field.assign("GATEHOUSE_");
      for (const char c : key) field.push_back(static_cast<char>(std::toupper(c)));
      field.append("=").append(value);
    }
    // (After the loop: iov_ points into fields_, which it may have grown.)
    for (std::size_t i = 0; i < n; ++i) iov_.push_back(io(fields_[i]));
    if (!native_ || ::sd_journal_sendv(iov_.data(), static_cast<int>(iov_.size())) < 0) {
      std::fprintf(stderr, "<%d>%s\n", priority_of(msg.level), message_.c_str() + kMessage.size());
    }
  }
  void flush_() override {}

 private:
  static iovec io(const std::string& s) {
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): iovec serves writes too
    return {const_cast<char*>(s.data()), s.size()};
  }

  const std::string process_field_;
  const std::string prefix_;
  const bool native_;
  // Reused line to line (under the sink's mutex): once warm, a line
  // allocates only for log_fields()' list.
  std::string message_, priority_;
  std::vector<std::string> fields_;  ///< the first n of them this line's
  std::vector<iovec> iov_;
};

bool field_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

std::vector<std::pair<std::string_view, std::string_view>> log_fields(std::string_view line) {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  std::size_t i = 0;
  while (i < line.size()) {
    const char c = line[i];
    if (c == '\'' || c == '"') {  // a quoted span: skip to its closing quote
      ++i;
      while (i < line.size() && line[i] != c) i += line[i] == '\\' ? 2 : 1;
      ++i;
      continue;
    }
    if (c == ' ' || (i > 0 && line[i - 1] != ' ')) {  // not the start of a word
      ++i;
      continue;
    }
    std::size_t end = line.find(' ', i);
    if (end == std::string_view::npos) end = line.size();
    const std::string_view word = line.substr(i, end - i);
    const std::size_t eq = word.find('=');
    if (eq != std::string_view::npos && eq > 0 && eq <= 32 && eq + 1 < word.size() &&
        word[0] >= 'a' && word[0] <= 'z' &&
        std::all_of(word.begin(), word.begin() + static_cast<std::ptrdiff_t>(eq), field_key_char) &&
        word.find_first_of("'\"", eq) == std::string_view::npos) {
      out.emplace_back(word.substr(0, eq), word.substr(eq + 1));
      i = end;
    } else {
      ++i;  // a plain word, or one that opens a quote: read on character by character
    }
  }
  return out;
}

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  unsigned long long device = 0;
  unsigned long long inode = 0;
  if (stream == nullptr || std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}

void init_logging(const std::string& process, spdlog::level::level_enum level) {
  std::shared_ptr<spdlog::logger> logger;
  if (stderr_is_journal()) {
    // journald stamps each line itself.
    logger = std::make_shared<spdlog::logger>(process, std::make_shared<JournalSink>(process));
    spdlog::register_logger(logger);
  } else {
    logger = spdlog::stderr_color_mt(process);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [" + process + "] %v");
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace gatehouse
