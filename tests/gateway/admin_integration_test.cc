// gatehousectl against the real gateway: the real binary over the real
// admin socket, real clients logged in through it, real gRPC game services.
// status and sessions, kicks by user and by connection (the client is told
// why), a game service taken out of rotation and back, the effective
// configuration with each value's origin, a reload refused with its reason
// while the gateway serves on, the socket's permissions, bad requests.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/codec/client_protocol.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using ::testing::HasSubstr;

/// What a gatehousectl run printed (stdout and stderr together) and its
/// exit code.
struct Ctl {
  int exit_code = -1;
  std::string output;
};

/// Runs build/bin/gatehousectl --socket SOCKET `args` (each word quoted for
/// the shell as it is).
Ctl gatehousectl(const GatewayProcess& gateway, const std::vector<std::string>& args) {
  std::string command = GATEHOUSE_BIN_DIR "/gatehousectl --socket '" + gateway.admin_socket() + "'";
  for (const std::string& a : args) command += " '" + a + "'";
  std::FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  Ctl ctl;
  char line[4096];
  while (std::fgets(line, sizeof line, p) != nullptr) ctl.output += line;
  const int status = ::pclose(p);
  ctl.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return ctl;
}

double metric(const GatewayProcess& gateway, const std::string& series) {
  return metric_sample(http_get(gateway.metrics_port(), "/metrics"), series);
}

/// Tokens "tok-N N" for users 1001 .. 1000 + n.
std::vector<std::string> tokens(int n) {
  std::vector<std::string> lines;
  for (int u = 1001; u <= 1000 + n; ++u)
    lines.push_back("tok-" + std::to_string(u) + " " + std::to_string(u));
  return lines;
}

std::unique_ptr<client::Client> player(const GatewayProcess& gateway, int user,
                                       bool encrypt = false) {
  return logged_in_client(gateway.port(), "udid-" + std::to_string(user),
                          "tok-" + std::to_string(user), encrypt);
}

/// The client is told it was kicked (client_error_ack, code kicked, the
/// operator's reason), then the gateway closes the connection.
void expect_kicked(client::Client& c, const std::string& reason) {
  const auto notice = c.receive_proto(protocol::kClientErrorAck, kPatience);
  ASSERT_TRUE(notice.has_value()) << "no client_error_ack before the close";
  const auto error = protocol::parse_client_error(notice->body);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, protocol::kErrorKicked);
  EXPECT_EQ(error->message, reason);
  EXPECT_TRUE(c.wait_closed(kPatience));
}

class AdminTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}, std::uint32_t workers = 2) {
    gateway_.emplace(GatewayOptions{game_.port(), workers, std::move(extra), tokens(24)});
  }
  /// The connection id `sessions` shows for `user`'s session.
  std::string conn_of(int user) {
    const Ctl ctl = gatehousectl(*gateway_, {"sessions", "--user", std::to_string(user)});
    std::smatch m;
    if (!std::regex_search(ctl.output, m, std::regex("conn=(0x[0-9a-f]+)"))) return {};
    return m[1];
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_F(AdminTest, StatusAndSessionsShowALoggedInClient) {
  start();
  auto alice = player(*gateway_, 1001, /*encrypt=*/true);
  ASSERT_TRUE(echo_works(*alice, "hello"));

  const Ctl status = gatehousectl(*gateway_, {"status"});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_THAT(status.output, HasSubstr("state: serving\n"));
  EXPECT_THAT(status.output, HasSubstr("instance: " + gateway_->instance() + "\n"));
  EXPECT_THAT(status.output, HasSubstr("connections: 1 "));
  EXPECT_THAT(status.output, HasSubstr("sessions: 1 logged in\n"));
  EXPECT_THAT(status.output, HasSubstr("worker-1: pid "));
  EXPECT_THAT(status.output, HasSubstr("game services: 1 instances take sessions, "));

  const Ctl sessions = gatehousectl(*gateway_, {"sessions"});
  EXPECT_EQ(sessions.exit_code, 0) << sessions.output;
  EXPECT_THAT(sessions.output, HasSubstr("sessions: 1\n"));
  EXPECT_TRUE(std::regex_search(
      sessions.output,
      std::regex("conn=0x[0-9a-f]+ user=1001 state=logged_in remote=127\\.0\\.0\\.1:" +
                 std::to_string(alice->local_port()) +
                 " listener=0 worker=[01] frontend=0 bridge=0 crypto=legacy ")))
      << sessions.output;

  EXPECT_THAT(gatehousectl(*gateway_, {"sessions", "--user", "1001"}).output,
              HasSubstr("sessions of user 1001: 1\n"));
  EXPECT_EQ(gatehousectl(*gateway_, {"sessions", "--user", "1002"}).output,
            "sessions of user 1002: 0\n");
  EXPECT_TRUE(gateway_->wait_log("admin uid=" + std::to_string(::geteuid()) + " pid="));
  EXPECT_GE(metric(*gateway_, R"(gatehouse_admin_commands_total{command="sessions",result="ok"})"),
            3);
}

TEST_F(AdminTest, KickByUserTellsTheClientWhyAndSparesTheOthers) {
  start();
  auto alice = player(*gateway_, 1001, /*encrypt=*/true);
  auto bob = player(*gateway_, 1002);
  ASSERT_TRUE(echo_works(*alice, "a"));

  const Ctl kick = gatehousectl(*gateway_, {"kick", "1001", "cheating", "detected"});
  EXPECT_EQ(kick.exit_code, 0) << kick.output;
  EXPECT_EQ(kick.output, "kicked 1 sessions of user 1001\n");
  expect_kicked(*alice, "cheating detected");
  EXPECT_TRUE(echo_works(*bob, "still here"));

  EXPECT_TRUE(gateway_->wait_log("reason=kicked_by_admin"));
  EXPECT_TRUE(gateway_->wait_log("request 'kick 1001 cheating detected': ok: kicked 1 sessions"));
  EXPECT_EQ(metric(*gateway_, R"(gatehouse_kicks_total{reason="kicked_by_admin"})"), 1);
  EXPECT_EQ(metric(*gateway_, R"(gatehouse_admin_commands_total{command="kick",result="ok"})"), 1);

  const Ctl again = gatehousectl(*gateway_, {"kick", "1001"});
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_EQ(again.output, "gatehousectl: no open session of user 1001\n");
  EXPECT_EQ(metric(*gateway_, R"(gatehouse_admin_commands_total{command="kick",result="error"})"),
            1);
}

TEST_F(AdminTest, KickByConnection) {
  start();
  auto alice = player(*gateway_, 1001);
  auto bob = player(*gateway_, 1002);
  const std::string conn = conn_of(1002);
  ASSERT_FALSE(conn.empty());

  const Ctl kick = gatehousectl(*gateway_, {"kick", conn, "maintenance"});
  EXPECT_EQ(kick.exit_code, 0) << kick.output;
  EXPECT_EQ(kick.output, "kicked 1 sessions of connection " + conn + "\n");
  expect_kicked(*bob, "maintenance");
  EXPECT_TRUE(echo_works(*alice, "unaffected"));

  const Ctl gone = gatehousectl(*gateway_, {"kick", conn});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.output, HasSubstr("no open session of connection " + conn));
}

// Two game services; one taken out of rotation: every new login goes to the
// other, the sessions on it stay and are served; enabled, it takes logins
// again.
TEST_F(AdminTest, BackendDisableSendsNewLoginsElsewhereAndKeepsTheSessionsOnIt) {
  FakeGameService other({.echo = true});
  const std::string first = "127.0.0.1:" + std::to_string(game_.port());
  const std::string second = "127.0.0.1:" + std::to_string(other.port());
  start({"--backend", second});
  const Ctl listed = gatehousectl(*gateway_, {"backends"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_THAT(listed.output, HasSubstr("instance=" + first + " state=live reachable="));
  EXPECT_THAT(listed.output, HasSubstr("instance=" + second + " state=live reachable="));

  // Users until one lands on the first game service (rendezvous hashing:
  // 16 all elsewhere is a chance in 65536).
  std::vector<std::unique_ptr<client::Client>> players;
  int user = 1001;
  for (; user <= 1016 && game_.streams().empty(); ++user) {
    players.push_back(player(*gateway_, user));
    ASSERT_TRUE(echo_works(*players.back(), "where am I"));
  }
  ASSERT_FALSE(game_.streams().empty()) << "no user of 16 went to " << first;
  client::Client& on_first = *players.back();

  const Ctl disable = gatehousectl(*gateway_, {"backend", "disable", first});
  EXPECT_EQ(disable.exit_code, 0) << disable.output;
  EXPECT_EQ(disable.output,
            "instance " + first + " disabled: no new session goes there; its 1 sessions stay\n");
  const Ctl shown = gatehousectl(*gateway_, {"backends"});
  EXPECT_TRUE(std::regex_search(
      shown.output,
      std::regex("instance=" + first + " state=disabled reachable=(yes|no) sessions=1 sent=")))
      << shown.output;
  const std::size_t streams_on_first = game_.streams().size();
  for (int u = user; u <= 1024; ++u) {
    auto newcomer = player(*gateway_, u);
    EXPECT_TRUE(echo_works(*newcomer, "elsewhere")) << "user " << u;
  }
  EXPECT_EQ(game_.streams().size(), streams_on_first) << "a login went to the disabled one";
  EXPECT_TRUE(echo_works(on_first, "I stay")) << "the session on the disabled instance";

  const Ctl enable = gatehousectl(*gateway_, {"backend", "enable", first});
  EXPECT_EQ(enable.exit_code, 0) << enable.output;
  EXPECT_THAT(gatehousectl(*gateway_, {"backends"}).output,
              HasSubstr("instance=" + first + " state=live"));
  auto back = player(*gateway_, 1000 + static_cast<int>(players.size()));  // first's user again
  EXPECT_TRUE(echo_works(*back, "back"));
  EXPECT_GT(game_.streams().size(), streams_on_first);

  const Ctl unknown = gatehousectl(*gateway_, {"backend", "disable", "10.9.9.9:1"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.output, HasSubstr("no game-service instance 10.9.9.9:1"));
}

TEST_F(AdminTest, ConfigSaysWhereEachValueCameFrom) {
  const std::string file = ::testing::TempDir() + "admin-config-" + std::to_string(::getpid());
  std::ofstream(file) << "rpm-limit = 150\nworkers = 3\n";
  start({"--config", file, "--txqueuelen", "64"});
  const Ctl config = gatehousectl(*gateway_, {"config"});
  EXPECT_EQ(config.exit_code, 0) << config.output;
  EXPECT_THAT(config.output, HasSubstr("\nrpm-limit = 150  # file\n"));
  EXPECT_THAT(config.output, HasSubstr("\nworkers = 2  # flag (overrides the file)\n"));
  EXPECT_THAT(config.output, HasSubstr("\ntxqueuelen = 64  # flag\n"));
  EXPECT_THAT(config.output, HasSubstr("\nmax-frame = 65535  # default\n"));
  EXPECT_THAT(config.output,
              HasSubstr("\nadmin-socket = " + gateway_->admin_socket() + "  # flag\n"));
  std::remove(file.c_str());
}

// A reload answers with the check's result, then what it applied, once the
// workers are replaced; a broken file is refused with the reason (exit 1,
// as systemctl reload's ExecReload sees it) and the gateway serves on.
TEST_F(AdminTest, ReloadReportsTheCheckAndRefusesABrokenConfigWithTheReason) {
  const std::string file = ::testing::TempDir() + "admin-reload-" + std::to_string(::getpid());
  std::ofstream(file) << "rpm-limit = 150\n";
  start({"--config", file});
  auto alice = player(*gateway_, 1001);

  std::ofstream(file) << "rpm-limit = lots\n";
  const Ctl refused = gatehousectl(*gateway_, {"reload"});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("gatehousectl: reload refused, the configuration does not "
                                        "parse"));
  EXPECT_THAT(refused.output, HasSubstr("rpm-limit"));
  EXPECT_EQ(metric(*gateway_, R"(gatehouse_reloads_total{result="refused"})"), 1);
  EXPECT_EQ(metric(*gateway_, R"(gatehouse_admin_commands_total{command="reload",result="error"})"),
            1);
  EXPECT_TRUE(echo_works(*alice, "serving on"));
  auto bob = player(*gateway_, 1002);
  EXPECT_TRUE(echo_works(*bob, "new logins too"));
  EXPECT_THAT(gatehousectl(*gateway_, {"config"}).output, HasSubstr("rpm-limit = 150  # file"));

  std::ofstream(file) << "rpm-limit = 100\n";
  const Ctl applied = gatehousectl(*gateway_, {"reload"});
  EXPECT_EQ(applied.exit_code, 0) << applied.output;
  EXPECT_THAT(applied.output, HasSubstr("check: the configuration parses"));
  EXPECT_THAT(applied.output, HasSubstr("settings applied: rpm-limit 150 -> 100\n"));
  EXPECT_THAT(applied.output, HasSubstr("reload complete: 2 workers replaced\n"));
  EXPECT_THAT(gatehousectl(*gateway_, {"config"}).output, HasSubstr("rpm-limit = 100  # file"));
  EXPECT_TRUE(echo_works(*alice, "after the roll"));
  std::remove(file.c_str());
}

TEST_F(AdminTest, TheSocketIsTheGatewayUsersAlone) {
  start();
  struct stat st {};
  ASSERT_EQ(::stat(gateway_->admin_socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  if (::geteuid() != 0) return;  // another user to try it as needs root
  // Another user cannot even connect.
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", gateway_->admin_socket().c_str());
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    const bool refused =
        ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == EACCES;
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "nobody could connect";
}

TEST_F(AdminTest, BadRequestsGetAClearError) {
  start();
  const Ctl unknown = gatehousectl(*gateway_, {"frobnicate"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.output, HasSubstr("gatehousectl: unknown command: frobnicate\n"));
  EXPECT_THAT(unknown.output, HasSubstr("kick USER|CONN [REASON]"));  // the usage follows
  const Ctl kick = gatehousectl(*gateway_, {"kick", "someone"});
  EXPECT_EQ(kick.exit_code, 1);
  EXPECT_THAT(kick.output, HasSubstr("usage: kick USER|CONN [REASON]"));
  EXPECT_THAT(gatehousectl(*gateway_, {"status", "now"}).output,
              HasSubstr("status takes no arguments"));
  EXPECT_EQ(
      metric(*gateway_, R"(gatehouse_admin_commands_total{command="invalid",result="error"})"), 3);

  // Not gatehousectl: whatever a peer writes is answered, never trusted.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", gateway_->admin_socket().c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string junk(2000, '\x1b');
  ASSERT_EQ(::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) {
    answer.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  EXPECT_EQ(answer.rfind("error ", 0), 0u) << answer;
  EXPECT_THAT(answer, HasSubstr("request longer than 1024 bytes\n"));
  EXPECT_TRUE(gateway_->wait_log("request longer than 1024 bytes"));
  EXPECT_EQ(answer.find('\x1b'), std::string::npos);

  // No gateway at the socket (the last --socket wins): gatehousectl says so.
  const Ctl nobody = gatehousectl(*gateway_, {"--socket", "/nonexistent/admin.sock", "status"});
  EXPECT_EQ(nobody.exit_code, 2);
  EXPECT_THAT(nobody.output, HasSubstr("cannot connect to /nonexistent/admin.sock"));
}

}  // namespace
}  // namespace gatehouse::testing
