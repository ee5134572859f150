// A real browser against the real gateway (issue 15, docs/websocket.md):
// headless Chromium loads a page this test serves (browser_page.h), which
// opens a WebSocket (ws, then wss) to the gateway, sends a heartbeat, logs
// in and has the game echo a message; the page posts its result back to the
// test. The gateway allows only the page's origin (ws-origins), so the
// browser's Origin header is checked too.
#include <signal.h>

#include <filesystem>
#include <optional>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "browser_page.h"
#include "child_process.h"
#include "fake_game_service.h"
#include "gateway_process.h"
#include "http_get.h"
#include "patience.h"
#include "test_certificate.h"

namespace gatehouse::testing {
namespace {

class Browser : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kChromium))
        << kChromium << " is missing: tools/setup.sh installs Debian's chromium";
    std::string pattern =
        (std::filesystem::temp_directory_path() / "gatehouse-browser-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    certificate_ = make_test_certificate(dir_);
  }
  void TearDown() override {
    // Chromium's helper processes may still be deleting profile files: a
    // file gone under remove_all is no failure of the test.
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  std::string dir_;
  TestCertificate certificate_;
  FakeGameService game_{{.echo = true}};
  PageServer page_;
};

TEST_P(Browser, LogsInAndEchoesOverItsWebSocket) {
  const std::string& scheme = GetParam();
  GatewayOptions options{game_.port(), 1, {}, {}};
  options.listen = "127.0.0.1:0,transport=" + scheme;
  options.extra_args = {"--tls-cert",     certificate_.cert, "--tls-key",
                        certificate_.key, "--ws-origins",    page_.origin()};
  GatewayProcess gateway(options);
  ChildProcess chromium = start_chromium(
      page_.page_for(scheme + "://127.0.0.1:" + std::to_string(gateway.port()) + "/"), dir_);
  const auto result = page_.wait_result(kBrowserPatience);
  chromium.kill(SIGTERM);
  (void)chromium.wait(kPatience);
  ASSERT_TRUE(result.has_value()) << "the page reported nothing\n" << gateway.log();
  EXPECT_TRUE(result->starts_with("ok uid=") && result->ends_with(" protos=1,11,1002"))
      << *result << "\n"
      << gateway.log();
  EXPECT_TRUE(gateway.wait_log("login conn=")) << gateway.log();
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_handshakes_failed_total{reason=\"origin\"}"),
            0);
}

INSTANTIATE_TEST_SUITE_P(Chromium, Browser, ::testing::Values("ws", "wss"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace gatehouse::testing
