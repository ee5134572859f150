// gatehouse-client (the executable) end to end against a scripted fake
// gateway: the lines it prints, the order of the actions, and its exit
// status.
#include <stdio.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fake_gateway.h"

namespace gatehouse::client {
namespace {

using testing::Bytes;
using testing::ClientFrame;
using ::testing::ElementsAre;
using testing::FakeConnection;
using testing::FakeListener;
using ::testing::HasSubstr;
using testing::ServerThread;

struct CliRun {
  int exit_code = -1;
  std::vector<std::string> lines;  ///< stdout
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CliRun run_client(const std::vector<std::string>& args) {
  std::string command = shell_quote(GATEHOUSE_CLIENT_PATH);
  for (const std::string& a : args) command += " " + shell_quote(a);
  command += " 2>/dev/null";
  CliRun run;
  FILE* out = ::popen(command.c_str(), "r");
  if (out == nullptr) return run;
  std::string line;
  for (int c = std::fgetc(out); c != EOF; c = std::fgetc(out)) {
    if (c == '\n') {
      run.lines.push_back(line);
      line.clear();
    } else {
      line += static_cast<char>(c);
    }
  }
  if (!line.empty()) run.lines.push_back(line);
  const int status = ::pclose(out);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

constexpr std::array<std::uint8_t, 32> kFakeStaticSecret = {
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};
constexpr std::array<std::uint8_t, 32> kFakeEphemeralSecret = {
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24,
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24};

std::array<std::uint8_t, 32> fake_static_public() {
  std::array<std::uint8_t, 32> out{};
  crypto_scalarmult_base(out.data(), kFakeStaticSecret.data());
  return out;
}

/// A pin file of `keys` (hex, one a line) in the temp directory.
std::string pin_file(const std::string& name,
                     const std::vector<std::array<std::uint8_t, 32>>& keys) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("gatehouse-cli-" + std::to_string(::getpid()) + "-" + name))
                         .string();
  std::ofstream out(path);
  out << "# pinned gateway keys\n";
  for (const auto& key : keys) {
    for (const std::uint8_t b : key) {
      char hex[3];
      std::snprintf(hex, sizeof hex, "%02x", b);
      out << hex;
    }
    out << "\n";
  }
  return path;
}

/// A scripted demo gateway: checks seq, runs the key exchange, logs
/// everyone in as uid 42 (udid "refuse-me" is refused, "push-and-close" gets
/// a chat push and is closed), answers heartbeats and pings, turns chat say
/// into a chat message to the sender, and closes on kick me.
void serve_demo(FakeConnection& conn) {
  std::uint32_t expected_seq = 1;
  for (;;) {
    if (conn.eof(std::chrono::milliseconds(0))) return;
    ClientFrame f;
    try {
      f = conn.read_frame();
    } catch (const std::runtime_error&) {
      return;  // the client went away
    }
    if (f.seq != expected_seq++) throw std::runtime_error("bad seq " + std::to_string(f.seq));
    switch (f.proto) {
      case 30: {
        // Redo the exchange by hand: the frame was already read.
        const auto send_seed = static_cast<std::int32_t>(testing::get_u32(f.body, 0));
        const auto receive_seed = static_cast<std::int32_t>(testing::get_u32(f.body, 4));
        Bytes ack;
        testing::put_u32(ack, testing::reference_dh(3, 111111));
        testing::put_u32(ack, testing::reference_dh(3, 222222));
        conn.write_packet(31, ack);
        conn.decrypt_with(testing::reference_dh(send_seed, 111111));
        conn.encrypt_with(testing::reference_dh(receive_seed, 222222));
        break;
      }
      case 34: {
        // The modern exchange's version 2, with the test's own construction:
        // the fake gateway's static key is kFakeStaticSecret, its ephemeral
        // one kFakeEphemeralSecret; ee and es seen from the gateway's side.
        std::array<std::uint8_t, 32> client_public{}, ephemeral_public{}, ee{}, es{};
        crypto_scalarmult_base(ephemeral_public.data(), kFakeEphemeralSecret.data());
        std::memcpy(client_public.data(), f.body.data(), 32);
        const std::uint8_t aead = std::to_integer<std::uint8_t>(f.body[40]);
        if (crypto_scalarmult(ee.data(), kFakeEphemeralSecret.data(), client_public.data()) != 0 ||
            crypto_scalarmult(es.data(), kFakeStaticSecret.data(), client_public.data()) != 0) {
          throw std::runtime_error("low-order client key");
        }
        const auto keys = testing::reference_v2_gateway(ee, es, fake_static_public(), client_public,
                                                        ephemeral_public, aead, aead);
        Bytes ack(ephemeral_public.size() + 1 + keys.confirm.size());
        std::memcpy(ack.data(), ephemeral_public.data(), 32);
        ack[32] = std::byte{aead};  // grants what was asked for
        std::memcpy(ack.data() + 33, keys.confirm.data(), 32);
        conn.write_packet(35, ack);
        conn.open_with(keys.to_gateway, aead);
        conn.seal_with(keys.to_client, aead);
        break;
      }
      case 10: {
        const std::uint16_t udid_len = testing::get_u16(f.body, 4);
        const std::string udid(reinterpret_cast<const char*>(f.body.data() + 6), udid_len);
        if (udid == "refuse-me") {
          conn.write_int32_packet(12, 3);
          conn.close();
          return;
        }
        conn.write_int32_packet(11, 42);
        if (udid == "push-and-close") {
          Bytes push;
          testing::put_i32(push, 7);
          testing::put_string(push, "bye");
          conn.write_packet(1004, push);
          conn.close();
          return;
        }
        break;
      }
      case 0:
        conn.write_packet(1, f.body);
        break;
      case 1001:
        conn.write_packet(1002, f.body);
        break;
      case 1003: {
        Bytes message;
        testing::put_i32(message, 42);
        message.insert(message.end(), f.body.begin(), f.body.end());
        conn.write_packet(1004, message);
        break;
      }
      case 1005:
        conn.close();
        return;
      default:
        throw std::runtime_error("unexpected proto " + std::to_string(f.proto));
    }
  }
}

CliRun run_against_demo(std::vector<std::string> args, std::string* server_error = nullptr) {
  FakeListener listener;
  ServerThread server([&] {
    FakeConnection conn = listener.accept(std::chrono::milliseconds(10000));
    serve_demo(conn);
  });
  args.push_back("127.0.0.1:" + std::to_string(listener.port()));
  CliRun run = run_client(args);
  const std::string error = server.join();
  if (server_error != nullptr) *server_error = error;
  return run;
}

TEST(ClientCli, EncryptedSessionRunsTheActionsInOrder) {
  std::string server_error;
  const CliRun run =
      run_against_demo({"--encrypt", "--udid", "alice", "--token", "t0k", "--heartbeat", "--echo",
                        "hello", "--say", "hi all", "--echo", "again", "--heartbeat", "--kick-me"},
                       &server_error);
  EXPECT_EQ(server_error, "");
  EXPECT_EQ(run.exit_code, 0);
  ASSERT_EQ(run.lines.size(), 16u) << ::testing::PrintToString(run.lines);
  EXPECT_EQ(run.lines[0], "-> 30 get_seed_req (legacy DH key exchange)");
  EXPECT_THAT(run.lines[1], HasSubstr("<- 31 get_seed_ack"));
  EXPECT_EQ(run.lines[2], "-> 10 user_login_req udid=\"alice\" certificate=(3 bytes)");
  EXPECT_EQ(run.lines[3], "<- 11 login ok uid=42");
  EXPECT_EQ(run.lines[4], "-> 0 heart_beat_req id=1");
  EXPECT_EQ(run.lines[5], "<- 1 heart_beat_ack id=1");
  EXPECT_EQ(run.lines[6], "-> 1001 proto_ping_req \"hello\"");
  EXPECT_EQ(run.lines[7], "<- 1002 proto_ping_ack \"hello\"");
  EXPECT_EQ(run.lines[8], "-> 1003 chat_say \"hi all\"");
  EXPECT_EQ(run.lines[9], "<- 1004 chat uid=42 \"hi all\"");
  EXPECT_EQ(run.lines[10], "-> 1001 proto_ping_req \"again\"");
  EXPECT_EQ(run.lines[11], "<- 1002 proto_ping_ack \"again\"");
  EXPECT_EQ(run.lines[12], "-> 0 heart_beat_req id=2");
  EXPECT_EQ(run.lines[13], "<- 1 heart_beat_ack id=2");
  EXPECT_EQ(run.lines[14], "-> 1005 kick_me");
  EXPECT_EQ(run.lines[15], "connection closed by gateway");
}

TEST(ClientCli, ModernSessionSealsEveryPayloadBothWays) {
  std::string server_error;
  const std::string pins = pin_file("pins", {fake_static_public()});
  const CliRun run = run_against_demo({"--modern", "--gateway-key", pins, "--udid", "alice",
                                       "--echo", "hello", "--heartbeat", "--kick-me"},
                                      &server_error);
  EXPECT_EQ(server_error, "");
  EXPECT_EQ(run.exit_code, 0);
  ASSERT_EQ(run.lines.size(), 10u) << ::testing::PrintToString(run.lines);
  EXPECT_THAT(run.lines[0], HasSubstr("-> 34 key_exchange2_req (X25519, gateway key id "));
  EXPECT_THAT(run.lines[0], HasSubstr(", asking for chacha20-poly1305)"));
  EXPECT_EQ(run.lines[1], "<- 35 key_exchange2_ack: gateway key verified, chacha20-poly1305 on");
  EXPECT_EQ(run.lines[3], "<- 11 login ok uid=42");
  EXPECT_EQ(run.lines[5], "<- 1002 proto_ping_ack \"hello\"");
  EXPECT_EQ(run.lines[7], "<- 1 heart_beat_ack id=1");
  EXPECT_EQ(run.lines[9], "connection closed by gateway");
}

TEST(ClientCli, ModernFailsAtTheAckOfAGatewayWithoutThePinnedKey) {
  std::array<std::uint8_t, 32> other{};
  other.fill(0x77);
  crypto_scalarmult_base(other.data(), other.data());
  const std::string pins = pin_file("wrong", {other});
  // The fake gateway answers with its own key's proof, the client pinned
  // another key whose id it names: the tag cannot match.
  const CliRun run = run_against_demo({"--modern", "--gateway-key", pins, "--no-login"});
  EXPECT_EQ(run.exit_code, 1);
  ASSERT_EQ(run.lines.size(), 1u) << ::testing::PrintToString(run.lines);
}

TEST(ClientCli, OneKeyExchangeOnlyAndModernNeedsAPinnedKey) {
  EXPECT_EQ(run_client({"--modern", "--encrypt", "127.0.0.1:1"}).exit_code, 1);
  EXPECT_EQ(run_client({"--modern", "127.0.0.1:1"}).exit_code, 1);
  EXPECT_EQ(run_client({"--gateway-key", "/nonexistent", "127.0.0.1:1"}).exit_code, 1);
  EXPECT_EQ(run_client({"--modern", "--gateway-key", "/nonexistent", "127.0.0.1:1"}).exit_code, 1);
}

TEST(ClientCli, KickMePrintsTheClose) {
  const CliRun run = run_against_demo({"--kick-me"});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(
      run.lines,
      ElementsAre("-> 10 user_login_req udid=\"demo-player\" certificate=(0 bytes)",
                  "<- 11 login ok uid=42", "-> 1005 kick_me", "connection closed by gateway"));
}

TEST(ClientCli, RefusedLoginFails) {
  const CliRun run = run_against_demo({"--udid", "refuse-me", "--echo", "x"});
  EXPECT_EQ(run.exit_code, 1);
  ASSERT_EQ(run.lines.size(), 2u) << ::testing::PrintToString(run.lines);
  EXPECT_EQ(run.lines[1], "<- 12 login failed code=3");
}

TEST(ClientCli, ListenPrintsPushesAndTheClose) {
  const CliRun run = run_against_demo({"--udid", "push-and-close", "--listen", "5"});
  EXPECT_EQ(run.exit_code, 1);  // closed while listening
  EXPECT_THAT(run.lines, ElementsAre(HasSubstr("-> 10 user_login_req"), "<- 11 login ok uid=42",
                                     "<- 1004 chat uid=7 \"bye\"", "connection closed by gateway"));
}

TEST(ClientCli, ListenReturnsZeroWhenNothingHappens) {
  const auto start = std::chrono::steady_clock::now();
  const CliRun run = run_against_demo({"--no-login", "--heartbeat", "--listen", "0.3"});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  EXPECT_THAT(run.lines, ElementsAre("-> 0 heart_beat_req id=1", "<- 1 heart_beat_ack id=1"));
}

TEST(ClientCli, UsageErrorsExitOne) {
  EXPECT_EQ(run_client({}).exit_code, 1);
  EXPECT_EQ(run_client({"no-port"}).exit_code, 1);
  EXPECT_EQ(run_client({"--bogus", "127.0.0.1:1"}).exit_code, 1);
  EXPECT_EQ(run_client({"127.0.0.1:99999"}).exit_code, 1);
  EXPECT_EQ(run_client({"--listen", "-1", "127.0.0.1:1"}).exit_code, 1);
}

TEST(ClientCli, ConnectFailureExitsOne) {
  std::uint16_t port = 0;
  {
    FakeListener gone;
    port = gone.port();
  }
  EXPECT_EQ(run_client({"127.0.0.1:" + std::to_string(port)}).exit_code, 1);
}

TEST(ClientCli, HelpListsEveryOption) {
  const CliRun run = run_client({"--help"});
  EXPECT_EQ(run.exit_code, 0);
  std::string all;
  for (const auto& l : run.lines) all += l + "\n";
  for (const char* option :
       {"--encrypt", "--modern", "--gateway-key", "--udid", "--token", "--heartbeat", "--echo",
        "--say", "--kick-me", "--listen", "--timeout", "--no-login", "HOST:PORT"}) {
    EXPECT_THAT(all, HasSubstr(option));
  }
}

}  // namespace
}  // namespace gatehouse::client
