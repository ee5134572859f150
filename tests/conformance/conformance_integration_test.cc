// gatehouse-conformance against real game services: the demo game (the real
// binary) passes every check; MinimalGame, a batched game service written
// here in a few lines, passes the checks its rules cover, and each flaw
// given to it fails the check that judges that rule, with a reason.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "batch.grpc.pb.h"
#include "child_process.h"
#include "local_port.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

using batch::Batch;
using Event = batch::Event;

struct KitRun {
  int status = -1;  ///< raw wait status
  std::string output;
};

/// Runs the kit to its end (bounded: every check waits at most --patience
/// for each event, and there are few) and returns what it printed.
KitRun run_kit(const std::vector<std::string>& args) {
  const std::filesystem::path out =
      std::filesystem::path(::testing::TempDir()) /
      ("conformance-" + std::to_string(::getpid()) + "-" +
       std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".out");
  std::vector<std::string> argv{CONFORMANCE_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  KitRun run;
  {
    ChildProcess kit(argv, out.string());
    const auto status = kit.wait(std::chrono::minutes(4));
    if (status) run.status = *status;
  }
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  run.output = text.str();
  std::filesystem::remove(out);
  return run;
}

bool exited_with(const KitRun& run, int code) {
  return WIFEXITED(run.status) && WEXITSTATUS(run.status) == code;
}

bool has_line(const std::string& output, const std::string& start) {
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(start, 0) == 0) return true;
  }
  return false;
}

/// Starts a game service process (`argv` without --listen, which this adds
/// with a free port), runs every check against it and expects each to pass.
/// Any implementation's demo game: the C++ one here, another SDK's the same.
void expect_every_check_passes(std::vector<std::string> argv) {
  const int port = free_port();
  argv.insert(argv.begin() + 1, {"--listen", "127.0.0.1:" + std::to_string(port)});
  ChildProcess game(argv, "/dev/null");
  ASSERT_TRUE(wait_listening(port, kPatience));
  const KitRun run = run_kit({"--sessions", "1000", "127.0.0.1:" + std::to_string(port)});
  EXPECT_TRUE(exited_with(run, 0)) << describe_status(run.status) << "\n" << run.output;
  EXPECT_TRUE(has_line(run.output, "conformance: 18 passed, 0 failed")) << run.output;
  EXPECT_FALSE(has_line(run.output, "FAIL")) << run.output;
}

TEST(Conformance, TheDemoGamePassesEveryCheck) {
  expect_every_check_passes({DEMO_GAME_PATH, "--no-auth"});
}

#ifdef GO_DEMO_GAME_PATH
// The Go SDK's demo game (sdk/go/examples/demo-game): the same contract from
// a second implementation.
TEST(GoConformance, TheGoDemoGamePassesEveryCheck) {
  expect_every_check_passes({GO_DEMO_GAME_PATH});
}
#endif

/// The rules the kit's checks `echo`, `ack` and `restart-duplicates` judge,
/// and no more (it re-sends nothing, so `restart-replay` fails): echoes 1001, acknowledges each
/// Batch it reads, numbers its events epoch << 32 | n and drops a MESSAGE whose seq is not above
/// the session's last, per gateway-id. Each Flaw breaks one of them.
class MinimalGame final : public batch::BatchGameService::Service {
 public:
  enum class Flaw { kNone, kProcessesDuplicates, kNeverAcks };
  explicit MinimalGame(Flaw flaw) : flaw_(flaw) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~MinimalGame() override { server_->Shutdown(std::chrono::system_clock::now()); }
  MinimalGame(const MinimalGame&) = delete;
  MinimalGame& operator=(const MinimalGame&) = delete;

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::Status Batches(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<Batch, Batch>* stream) override {
    std::string gateway_id;
    if (const auto it = context->client_metadata().find("gateway-id");
        it != context->client_metadata().end()) {
      gateway_id.assign(it->second.data(), it->second.size());
    }
    std::uint64_t read = 0;
    Batch in;
    while (stream->Read(&in)) {
      Batch out;
      {
        std::lock_guard lock(mu_);
        auto& sessions = gateways_[gateway_id];
        for (const Event& e : in.events()) {
          ++read;
          if (e.kind() != Event::MESSAGE || e.message().size() < 2) continue;
          Numbers& s = sessions[e.session()];
          if (flaw_ != Flaw::kProcessesDuplicates) {
            if (e.seq() <= s.last_in) continue;
            s.last_in = e.seq();
          }
          if (e.message()[0] != '\x03' || e.message()[1] != '\xe9') continue;  // 1001
          Event* reply = out.add_events();
          reply->set_session(e.session());
          reply->set_kind(Event::MESSAGE);
          reply->set_message("\x03\xea" + e.message().substr(2));  // 1002
          reply->set_seq(kEpoch << 32 | ++s.sent);
        }
      }
      if (flaw_ != Flaw::kNeverAcks) out.set_ack(read);
      if ((out.events_size() != 0 || out.ack() != 0) && !stream->Write(out)) break;
    }
    return grpc::Status::OK;
  }

 private:
  static constexpr std::uint64_t kEpoch = 7;
  struct Numbers {
    std::uint64_t last_in = 0;  // the gateway's last MESSAGE seq taken
    std::uint64_t sent = 0;     // n of our last event
  };
  const Flaw flaw_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;
  std::map<std::string, std::map<std::uint64_t, Numbers>> gateways_;  // guarded by mu_
};

TEST(Conformance, AMinimalGamePassesTheChecksOfItsRules) {
  MinimalGame game(MinimalGame::Flaw::kNone);
  const KitRun run = run_kit(
      {"--check", "echo", "--check", "ack", "--check", "restart-duplicates", game.target()});
  EXPECT_TRUE(exited_with(run, 0)) << describe_status(run.status) << "\n" << run.output;
  EXPECT_TRUE(has_line(run.output, "conformance: 3 passed, 0 failed")) << run.output;
}

TEST(Conformance, AGameThatNeverResendsWhatWasNotAcknowledgedFails) {
  MinimalGame game(MinimalGame::Flaw::kNone);  // it keeps nothing for re-sending
  const KitRun run = run_kit({"--patience", "5", "--check", "restart-replay", game.target()});
  EXPECT_TRUE(exited_with(run, 1)) << describe_status(run.status) << "\n" << run.output;
  EXPECT_TRUE(has_line(run.output,
                       "FAIL restart-replay: waited 5 s in vain for the 4 unacknowledged echoes"))
      << run.output;
}

TEST(Conformance, AGameThatProcessesARepeatedMessageTwiceFails) {
  MinimalGame game(MinimalGame::Flaw::kProcessesDuplicates);
  const KitRun run = run_kit({"--check", "echo", "--check", "restart-duplicates", game.target()});
  EXPECT_TRUE(exited_with(run, 1)) << describe_status(run.status) << "\n" << run.output;
  EXPECT_TRUE(has_line(run.output, "PASS echo")) << run.output;
  EXPECT_TRUE(has_line(run.output, "FAIL restart-duplicates: the echo of 'd1' was taken 2 times"))
      << run.output;
  EXPECT_TRUE(has_line(run.output, "conformance: 1 passed, 1 failed")) << run.output;
}

TEST(Conformance, AGameThatNeverAcknowledgesFails) {
  MinimalGame game(MinimalGame::Flaw::kNeverAcks);
  const KitRun run = run_kit({"--check", "ack", game.target()});
  EXPECT_TRUE(exited_with(run, 1)) << describe_status(run.status) << "\n" << run.output;
  EXPECT_TRUE(has_line(run.output,
                       "FAIL ack: waited 10 s in vain for Batch.ack covering the 21 events sent"))
      << run.output;
}

TEST(Conformance, AnUnreachableServiceFailsAndSaysSo) {
  const int port = free_port();  // nothing listens there
  const KitRun run = run_kit({"--patience", "2", "127.0.0.1:" + std::to_string(port)});
  EXPECT_TRUE(exited_with(run, 1)) << describe_status(run.status) << "\n" << run.output;
  EXPECT_TRUE(has_line(run.output, "FAIL connect: cannot reach")) << run.output;
}

}  // namespace
}  // namespace gatehouse::testing
