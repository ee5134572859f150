// The "done when": a client written only from docs/protocol-modern.md
// (independent_client.py: Python, hashlib and python3-cryptography, none of
// the gateway's code) checks the page's test vectors, completes version 2,
// logs in and echoes through the real gateway, and detects a man in the
// middle that substitutes its own key.
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gateway_process.h"
#include "mitm_proxy.h"

namespace gatehouse::testing {
namespace {

using ::testing::HasSubstr;

TEST(IndependentClient, CompletesVersion2AndDetectsASubstitutedGatewayKey) {
  FakeGameService game({.echo = true});
  GatewayOptions options{game.port(), 1, {}, {}};
  options.listen = "127.0.0.1:0,crypto=modern";
  GatewayProcess gateway(std::move(options));
  MitmProxy mitm(gateway.port(), gateway.gateway_key(), MitmProxy::Mode::kOwnExchanges);

  const std::string out = gateway.dir() + "/independent.out";
  const std::string source = GATEHOUSE_SOURCE_DIR;
  ChildProcess python(
      {PYTHON3_PATH, source + "/tests/gateway/independent_client.py", "--doc",
       source + "/docs/protocol-modern.md", "--port", std::to_string(gateway.port()), "--mitm-port",
       std::to_string(mitm.port()), "--gateway-key", gateway.gateway_public_key_file()},
      out);
  const auto status = python.wait(2 * kPatience);
  std::ifstream in(out);
  const std::string output((std::istreambuf_iterator<char>(in)), {});
  ASSERT_TRUE(status.has_value()) << "still running:\n" << output;
  EXPECT_EQ(*status, 0) << describe_status(*status) << "\n" << output << gateway.log();
  EXPECT_THAT(output, HasSubstr("vectors: 16 values match the page"));
  EXPECT_THAT(output, HasSubstr("live: key_exchange2_ack proves the pinned key"));
  EXPECT_THAT(output, HasSubstr("live: echo through the game service"));
  EXPECT_THAT(output, HasSubstr("mitm: detected (gateway key mismatch"));
  EXPECT_EQ(mitm.forged_acks(), 1);
  EXPECT_EQ(gateway.log_count("kick conn="), 0u) << gateway.log();
}

}  // namespace
}  // namespace gatehouse::testing
