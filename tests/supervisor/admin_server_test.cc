// AdminServer over a real unix socket, its loop driven by the test with a
// clock of the test's: who may connect, answers now and later, the bounds
// (busy, idle, oversized), and what it does with a socket already at its
// path.
#include "gatehouse/supervisor/admin_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gatehouse::supervisor {
namespace {

using ::testing::HasSubstr;

/// A client end: connects at once (the server accepts at its next serve()).
class Peer {
 public:
  explicit Peer(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
    }
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~Peer() { ::close(fd_); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  void say(const std::string& text) const {
    ASSERT_EQ(::send(fd_, text.data(), text.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(text.size()));
  }
  /// What has come so far; `closed` once the server closed its end.
  std::string heard() {
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n > 0) {
        text_.append(buffer, static_cast<std::size_t>(n));
      } else {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
        return text_;
      }
    }
  }
  bool closed = false;

 private:
  int fd_;
  std::string text_;
};

class AdminServerTest : public ::testing::Test {
 protected:
  AdminServerTest()
      : dir_(std::filesystem::temp_directory_path() /
             ("gatehouse-admin-" + std::to_string(::getpid()))),
        path_((dir_ / "run" / "admin.sock").string()) {
    std::filesystem::remove_all(dir_);
  }
  ~AdminServerTest() override { std::filesystem::remove_all(dir_); }

  /// serve() a few times at `now`: enough for the kernel to carry what the
  /// peers wrote (a local socket's bytes are there once send() returned).
  void pump(AdminServer& server, std::int64_t now = 0) {
    for (int i = 0; i < 3; ++i) server.serve(handler_, now);
  }

  std::filesystem::path dir_;
  std::string path_;
  std::vector<std::string> lines_;  ///< every request the handler got
  std::vector<AdminServer::Ticket> kept_;
  AdminServer::Peer last_peer_;
  AdminServer::Handler handler_ = [this](AdminServer::Ticket ticket, const AdminServer::Peer& peer,
                                         std::string_view line) -> std::optional<admin::Response> {
    lines_.emplace_back(line);
    last_peer_ = peer;
    if (line == "later") {
      kept_.push_back(ticket);
      return std::nullopt;
    }
    return admin::Response{true, {"you said " + std::string(line)}};
  };
};

TEST_F(AdminServerTest, OnlyTheUserCanConnectAndEachPeerIsKnown) {
  AdminServer server(path_);  // its directory made as well
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  Peer p(path_);
  p.say("status\r\n");  // a telnet's line end too
  pump(server);
  EXPECT_EQ(lines_, std::vector<std::string>{"status"});
  EXPECT_EQ(last_peer_.uid, ::geteuid());
  EXPECT_EQ(last_peer_.pid, ::getpid());
  EXPECT_EQ(p.heard(), "ok 1\nyou said status\n");
  EXPECT_TRUE(p.closed) << "one request per connection";
}

TEST_F(AdminServerTest, ARequestAnsweredLaterReachesItsPeerAndNoOther) {
  AdminServer server(path_);
  Peer waiting(path_);
  Peer other(path_);
  waiting.say("later\n");
  other.say("later\n");
  pump(server);
  ASSERT_EQ(kept_.size(), 2u);
  EXPECT_EQ(waiting.heard(), "");
  EXPECT_FALSE(waiting.closed);
  // The handler's operation bounds the wait: the idle timeout does not cut it.
  pump(server, 3 * AdminServer::kIdleTimeoutNs);
  EXPECT_EQ(waiting.heard(), "");
  EXPECT_FALSE(waiting.closed);
  server.answer(kept_[0], admin::Response::error("refused: bad\nconfig"),
                3 * AdminServer::kIdleTimeoutNs);
  pump(server, 3 * AdminServer::kIdleTimeoutNs);
  EXPECT_EQ(waiting.heard(), "error 1\nrefused: bad\\nconfig\n") << "every line escaped";
  EXPECT_TRUE(waiting.closed);
  EXPECT_EQ(other.heard(), "");
  EXPECT_FALSE(other.closed);
}

TEST_F(AdminServerTest, AnAnswerForAPeerThatLeftIsDropped) {
  AdminServer server(path_);
  {
    Peer gone(path_);
    gone.say("later\n");
    pump(server);
  }
  ASSERT_EQ(kept_.size(), 1u);
  server.answer(kept_[0], admin::Response{true, {"done"}}, 0);
  pump(server);  // writing to the closed peer neither blocks nor kills (SIGPIPE)
  Peer next(path_);
  next.say("status\n");
  pump(server);
  EXPECT_EQ(next.heard(), "ok 1\nyou said status\n");
}

TEST_F(AdminServerTest, APeerThatSaysNothingIsClosedAfterTheIdleTimeout) {
  AdminServer server(path_);
  Peer silent(path_);
  Peer partial(path_);
  partial.say("sta");
  pump(server, 0);
  pump(server, AdminServer::kIdleTimeoutNs - 1);
  EXPECT_EQ(silent.heard(), "");
  EXPECT_FALSE(silent.closed);
  pump(server, AdminServer::kIdleTimeoutNs);
  silent.heard();
  partial.heard();
  EXPECT_TRUE(silent.closed);
  EXPECT_TRUE(partial.closed);
  EXPECT_TRUE(lines_.empty()) << "half a line is no request";
}

TEST_F(AdminServerTest, AnOversizedRequestIsHandedOverCutAndAnswered) {
  AdminServer server(path_);
  Peer p(path_);
  p.say(std::string(admin::kMaxRequestBytes + 100, 'x'));
  pump(server);
  ASSERT_EQ(lines_.size(), 1u) << "not kept waiting for a newline that may never come";
  EXPECT_GT(lines_[0].size(), admin::kMaxRequestBytes);
  EXPECT_THAT(p.heard(), HasSubstr("ok 1\nyou said xxx"));
}

TEST_F(AdminServerTest, PeersOverTheLimitAreToldBusyAndTheOthersServed) {
  AdminServer server(path_);
  std::vector<std::unique_ptr<Peer>> peers;
  for (std::size_t i = 0; i < AdminServer::kMaxConnections; ++i) {
    peers.push_back(std::make_unique<Peer>(path_));
  }
  pump(server);
  Peer extra(path_);
  extra.say("status\n");
  pump(server);
  EXPECT_THAT(extra.heard(), HasSubstr("error 1\nbusy: 16 admin connections are open"));
  EXPECT_TRUE(extra.closed);
  EXPECT_TRUE(lines_.empty()) << "a busy peer's request is never handled";
  peers[0]->say("status\n");
  pump(server);
  EXPECT_EQ(peers[0]->heard(), "ok 1\nyou said status\n");
}

TEST_F(AdminServerTest, ASocketADeadGatewayLeftIsReplacedALiveOneIsNot) {
  {
    AdminServer first(path_);
    EXPECT_THAT(
        [&] {
          try {
            AdminServer second(path_);
          } catch (const std::runtime_error& e) {
            return std::string(e.what());
          }
          return std::string("no error");
        }(),
        HasSubstr("another gateway answers there"));
  }
  // A dead gateway's: bound, never listening, its process gone.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
  AdminServer replacing(path_);
  Peer p(path_);
  p.say("status\n");
  pump(replacing);
  EXPECT_EQ(p.heard(), "ok 1\nyou said status\n");
}

TEST_F(AdminServerTest, AFileThatIsNotASocketIsLeftAlone) {
  std::filesystem::create_directories(dir_ / "run");
  std::ofstream(path_) << "operator's notes\n";
  try {
    AdminServer server(path_);
    ADD_FAILURE() << "took over a regular file";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("exists and is not a socket"));
    EXPECT_THAT(e.what(), HasSubstr("--admin-socket " + path_));
  }
  std::ifstream in(path_);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "operator's notes");
}

}  // namespace
}  // namespace gatehouse::supervisor
