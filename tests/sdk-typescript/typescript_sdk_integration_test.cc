// The TypeScript SDK (sdk/typescript) against the real gateway and the real
// demo game (examples/demo-game), over ws and wss, with the modern exchange
// version 2 and a pinned gateway key: node runs two players (signed-token
// logins, an echo, a chat between them, the demo game's kick_me with its
// reason delivered), the README's example as written, a pinned key the
// gateway does not hold, a player that reconnects when its connection breaks,
// and headless Chromium runs the browser bundle (udid logins over wss, a
// chat, a kick).
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "browser_page.h"
#include "child_process.h"
#include "gateway_process.h"
#include "local_port.h"
#include "patience.h"
#include "test_certificate.h"

namespace gatehouse::testing {
namespace {

using ::testing::HasSubstr;

const std::string kSdk = std::string(GATEHOUSE_SOURCE_DIR) + "/sdk/typescript";

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), {}};
}

struct Finished {
  std::optional<int> status;  ///< nullopt: still running after the patience
  std::string output;
};

/// Runs a program to its end (bounded by 2 * kPatience), its output in `out`.
Finished run(const std::vector<std::string>& argv, const std::string& out) {
  ChildProcess child(argv, out);
  Finished r{child.wait(2 * kPatience), {}};
  if (!r.status) child.kill(SIGKILL);
  r.output = read_file(out);
  return r;
}

/// The demo game service (the real binary) on a free port.
class DemoGame {
 public:
  DemoGame() : port_(free_port()) {
    child_.emplace(
        std::vector<std::string>{DEMO_GAME_PATH, "--listen", "127.0.0.1:" + std::to_string(port_)});
    if (!wait_listening(port_, kPatience)) ADD_FAILURE() << "the demo game did not start";
  }
  ~DemoGame() {
    child_->kill(SIGTERM);
    if (!child_->wait(kPatience)) child_->kill(SIGKILL);
  }
  DemoGame(const DemoGame&) = delete;
  DemoGame& operator=(const DemoGame&) = delete;
  int port() const { return port_; }

 private:
  int port_;
  std::optional<ChildProcess> child_;
};

class TypeScriptSdk : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kSdk + "/dist/index.js"))
        << "the SDK is not built: the test sdk_typescript_build runs npm run build";
    std::string pattern =
        (std::filesystem::temp_directory_path() / "gatehouse-tssdk-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    certificate_ = make_test_certificate(dir_);
    // node (the ws package, through Node's TLS) trusts the test's certificate.
    ::setenv("NODE_EXTRA_CA_CERTS", certificate_.cert.c_str(), 1);
  }
  void TearDown() override {
    // Chromium's helper processes may still be removing files of its
    // profile as the test removes the directory: what they took is gone.
    std::error_code ec;
    for (int i = 0; i < 3 && !dir_.empty() && std::filesystem::exists(dir_); ++i) {
      std::filesystem::remove_all(dir_, ec);
    }
  }

  /// A gateway in front of the demo game: a ws listener (port 0) and a wss
  /// one (port 1), both `crypto=modern`; `extra` adds flags.
  GatewayProcess start_gateway(std::vector<std::string> extra = {}) {
    GatewayOptions options{game_.port(), 1, {}, {}};
    options.listen = "127.0.0.1:0,transport=ws,crypto=modern";
    options.extra_args = {"--listen",   "127.0.0.1:0,transport=wss,crypto=modern",
                          "--tls-cert", certificate_.cert,
                          "--tls-key",  certificate_.key};
    options.extra_args.insert(options.extra_args.end(), extra.begin(), extra.end());
    return GatewayProcess(std::move(options));
  }

  /// `login = signed:` with a key pair made by `gatehouse token-keygen`, as
  /// tools/run.sh does: the flags for the gateway.
  std::vector<std::string> signed_login() {
    const Finished keygen =
        run({kGatehouse, "token-keygen", "--out", dir_ + "/login"}, dir_ + "/token-keygen.out");
    EXPECT_EQ(keygen.status, 0) << keygen.output;
    return {"--login", "signed:" + dir_ + "/login.pub"};
  }

  /// A signed token for `uid` (`gatehouse token`).
  std::string token(int uid) {
    const Finished minted = run({kGatehouse, "token", "--key", dir_ + "/login.key", "--uid",
                                 std::to_string(uid), "--ttl", "3600"},
                                dir_ + "/token-" + std::to_string(++tokens_) + ".out");
    EXPECT_EQ(minted.status, 0) << minted.output;
    std::string t = minted.output;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    return t;
  }

  static std::string url(const char* scheme, std::uint16_t port) {
    return std::string(scheme) + "://127.0.0.1:" + std::to_string(port) + "/";
  }

  const std::string kGatehouse = std::string(GATEHOUSE_BIN_DIR) + "/gatehouse";
  std::string dir_;
  int tokens_ = 0;  // minted: each into a file of its own
  TestCertificate certificate_;
  DemoGame game_;
};

TEST_F(TypeScriptSdk, TwoNodePlayersLogInEchoChatAndOneIsKickedWithTheReasonOverWsAndWss) {
  GatewayProcess gateway = start_gateway(signed_login());
  for (const auto& [scheme, port] : {std::pair{"ws", gateway.port(0)}, {"wss", gateway.port(1)}}) {
    SCOPED_TRACE(scheme);
    const Finished players =
        run({NODE_PATH, kSdk + "/test/integration/two_players.mjs", url(scheme, port),
             gateway.gateway_public_key_file(), token(1001), "1001", token(1002), "1002"},
            dir_ + "/" + scheme + ".out");
    ASSERT_TRUE(players.status.has_value()) << "still running:\n" << players.output;
    EXPECT_EQ(*players.status, 0) << describe_status(*players.status) << "\n"
                                  << players.output << gateway.log();
    EXPECT_THAT(players.output, HasSubstr("ok login 1001 1002"));
    EXPECT_THAT(players.output, HasSubstr("ok echo"));
    EXPECT_THAT(players.output, HasSubstr("ok chat"));
    EXPECT_THAT(players.output, HasSubstr("ok kick reason=kicked_by_game"));
    EXPECT_THAT(players.output, HasSubstr("ok alice unaffected"));
  }
  // Both players' exchanges were version 2, and only the kick_me ended a session by the game.
  EXPECT_TRUE(gateway.wait_log_count("reason=kicked_by_game", 2)) << gateway.log();
  EXPECT_EQ(gateway.log_count("reason=decrypt_failed"), 0u) << gateway.log();
}

TEST_F(TypeScriptSdk, TheReadmeExampleRunsAsWritten) {
  GatewayProcess gateway = start_gateway(signed_login());
  const Finished example = run({NODE_PATH, kSdk + "/examples/chat.mjs", url("wss", gateway.port(1)),
                                gateway.gateway_public_key_file(), token(1001)},
                               dir_ + "/example.out");
  ASSERT_TRUE(example.status.has_value()) << "still running:\n" << example.output;
  EXPECT_EQ(*example.status, 0) << describe_status(*example.status) << "\n"
                                << example.output << gateway.log();
  EXPECT_THAT(example.output, HasSubstr("logged in as 1001"));
  EXPECT_THAT(example.output, HasSubstr("echo: hello"));
  EXPECT_THAT(example.output, HasSubstr("heard 1001: hi all"));
  EXPECT_THAT(example.output, HasSubstr("kicked: kicked_by_game"));
}

TEST_F(TypeScriptSdk, APinnedKeyTheGatewayDoesNotHoldIsAMismatchFromNode) {
  // Another gateway's key: this gateway has no key of that id and closes
  // (unknown_gateway_key), which the SDK reports as the end it does not retry.
  GatewayProcess gateway = start_gateway();
  const std::string other = dir_ + "/other.key";
  make_gateway_key(other);
  const Finished example = run({NODE_PATH, kSdk + "/examples/chat.mjs", url("ws", gateway.port(0)),
                                other + ".pub", "unused"},
                               dir_ + "/other.out");
  ASSERT_TRUE(example.status.has_value()) << "still running:\n" << example.output;
  EXPECT_NE(*example.status, 0) << example.output;
  EXPECT_THAT(example.output, HasSubstr("unknown_gateway_key")) << gateway.log();
  EXPECT_THAT(example.output, ::testing::Not(HasSubstr("logged in")));
  EXPECT_TRUE(gateway.wait_log("unknown_gateway_key")) << gateway.log();
}

TEST_F(TypeScriptSdk, ANodePlayerReconnectsWhenItsConnectionBreaks) {
  GatewayProcess gateway = start_gateway();
  const std::string out = dir_ + "/reconnect.out";
  ChildProcess player({NODE_PATH, kSdk + "/test/integration/reconnect.mjs",
                       url("wss", gateway.port(1)), gateway.gateway_public_key_file()},
                      out);
  // Logged in and echoing: then its connection breaks (the frontend dies;
  // the supervisor starts another on the same listeners).
  const auto deadline = std::chrono::steady_clock::now() + 2 * kPatience;
  std::optional<int> ended;
  while (read_file(out).find("ready uid=") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline &&
         !(ended = player.wait(std::chrono::milliseconds(20)))) {
  }
  ASSERT_FALSE(ended.has_value()) << "the player ended first:\n" << read_file(out);
  ASSERT_THAT(read_file(out), HasSubstr("ready uid=")) << gateway.log();
  const pid_t frontend = gateway.frontend_pid();
  ASSERT_GT(frontend, 0);
  ::kill(frontend, SIGKILL);
  const auto status = player.wait(2 * kPatience);
  const std::string output = read_file(out);
  ASSERT_TRUE(status.has_value()) << "still running:\n" << output << gateway.log();
  EXPECT_EQ(*status, 0) << describe_status(*status) << "\n" << output << gateway.log();
  EXPECT_THAT(output, HasSubstr("ok reconnected reason=connection_lost")) << gateway.log();
}

// The SDK's browser bundle in a page: two players log in over wss (udid
// logins: login = any), one chats to the other, then asks to be kicked.
constexpr const char* kSdkPage = R"(<!doctype html>
<meta charset="utf-8"><title>gatehouse TypeScript SDK</title>
<script type="module">
import { chatSay, DemoProto, GatehouseClient, parseChatHear } from "/gatehouse.browser.js";
const q = new URLSearchParams(location.search);
const report = (result) => fetch("/result", { method: "POST", body: result });
try {
  const player = (udid) => new GatehouseClient({
    url: q.get("gateway"), gatewayKeys: [q.get("key")], login: { openUdid: udid } });
  const a = player("browser-a"), b = player("browser-b");
  const [uidA, uidB] = await Promise.all([a.connect(), b.connect()]);
  const heard = new Promise((resolve) => b.on("message", ({ proto, body }) => {
    if (proto === DemoProto.chatHear) resolve(parseChatHear(body));
  }));
  // b's login ack can reach the page before the game has b's stream (the
  // gateway opens it as the login completes): said again until b hears it.
  let h;
  for (let i = 0; i < 40 && h === undefined; ++i) {
    a.send(DemoProto.chatSay, chatSay("hello from the browser"));
    h = await Promise.race([heard, new Promise((resolve) => setTimeout(resolve, 250))]);
  }
  if (h === undefined) throw new Error("b never heard a's chat");
  const kicked = new Promise((resolve) => a.on("kick", ({ reason }) => resolve(reason)));
  a.send(DemoProto.kickMe);
  const reason = await kicked;
  report(`ok heard=${h.uid === uidA ? "a" : h.uid}:${h.text} kick=${reason} b=${b.connected}`);
} catch (e) {
  report("error " + e);
}
</script>
)";

TEST_F(TypeScriptSdk, ChromiumRunsTheBundleOverWssWithAPinnedKey) {
  ASSERT_TRUE(std::filesystem::exists(kChromium))
      << kChromium << " is missing: tools/setup.sh installs Debian's chromium";
  PageServer page;
  page.add("/sdk.html", "text/html; charset=utf-8", kSdkPage);
  page.add("/gatehouse.browser.js", "text/javascript",
           read_file(kSdk + "/dist/gatehouse.browser.js"));
  GatewayProcess gateway = start_gateway({"--ws-origins", page.origin()});
  const std::string key = read_file(gateway.gateway_public_key_file());
  const auto hex_start = key.find_first_of("0123456789abcdef", key.rfind('\n', key.size() - 2));
  const std::string page_url = page.origin() + "/sdk.html?gateway=" + url("wss", gateway.port(1)) +
                               "&key=" + key.substr(hex_start, 64);
  ChildProcess chromium = start_chromium(page_url, dir_);
  const auto result = page.wait_result(kBrowserPatience);
  chromium.kill(SIGTERM);
  (void)chromium.wait(kPatience);
  ASSERT_TRUE(result.has_value()) << "the page reported nothing\n"
                                  << read_file(dir_ + "/chromium.log") << gateway.log();
  EXPECT_EQ(*result, "ok heard=a:hello from the browser kick=kicked_by_game b=true")
      << gateway.log();
}

}  // namespace
}  // namespace gatehouse::testing
