// game_server_bench: echo throughput of a GameService, from the gateway's
// side. Opens --streams streams (one channel per --channels), each keeping up
// to --window messages in flight, and counts echoes until every stream has
// had --messages of them. The game is an in-process GameServer that echoes
// every Message frame, or any GameService at --target that echoes 1001
// (gatehouse-demo-game).
//
//   game_server_bench [--target HOST:PORT] [--streams N] [--messages N] [--window N]
//                     [--channels N]
//
// Prints one JSON line. Exit status 0 when every echo came back intact.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "game.grpc.pb.h"
#include "game_test_client.h"
#include "gatehouse/game/demo_game.h"
#include "gatehouse/game/game_server.h"

namespace {

using gatehouse::game::Bytes;
using Frame = proto::Game::Frame;

struct Options {
  std::string target;  ///< empty: in-process GameServer
  int streams = 1000;
  int messages = 200;
  int window = 8;
  int channels = 4;
};

class Echo final : public gatehouse::game::GameHandler {
 public:
  void on_open(gatehouse::game::StreamHandle) override {}
  void on_message(gatehouse::game::StreamHandle stream,
                  std::span<const std::byte> message) override {
    if (const auto reply = gatehouse::game::demo::echo_reply(message)) stream.push(*reply);
  }
  void on_end(gatehouse::game::StreamHandle, bool) override {}
};

/// Completion of every stream.
struct Latch {
  std::mutex mu;
  std::condition_variable cv;
  int remaining = 0;
  std::atomic<long> errors{0};
  void count_down() {
    std::lock_guard lock(mu);
    if (--remaining == 0) cv.notify_all();
  }
};

/// One stream: writes one at a time, at most `window` unanswered.
class EchoStream final : public grpc::ClientBidiReactor<Frame, Frame> {
 public:
  EchoStream(proto::GameService::Stub& stub, int user_id, const Options& options, Latch& latch)
      : options_(options), latch_(latch) {
    context_.AddMetadata("userid", std::to_string(user_id));
    out_.set_message(std::string("\x03\xe9", 2) + "0123456789abcdef0123456789abcdef");
    expected_ = std::string("\x03\xea", 2) + "0123456789abcdef0123456789abcdef";
    stub.async()->Stream(&context_, this);
    StartRead(&in_);
    {
      std::lock_guard lock(mu_);
      maybe_write_locked();
    }
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) return;
    maybe_write_locked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (in_.message() != expected_) ++latch_.errors;
    std::lock_guard lock(mu_);
    if (++received_ == options_.messages) return maybe_write_locked();
    StartRead(&in_);
    maybe_write_locked();
  }
  void OnDone(const grpc::Status& status) override {
    if (!status.ok() || received_ != options_.messages) ++latch_.errors;
    // Gone before main() may return: the last count lets it.
    Latch& latch = latch_;
    delete this;
    latch.count_down();
  }

 private:
  /// Starts the next write, or the half-close once every echo is in.
  void maybe_write_locked() {
    if (writing_ || closed_) return;
    if (received_ == options_.messages) {
      closed_ = true;
      StartWritesDone();
      return;
    }
    if (sent_ == options_.messages || sent_ - received_ >= options_.window) return;
    writing_ = true;
    ++sent_;
    StartWrite(&out_);
  }

  const Options& options_;
  Latch& latch_;
  grpc::ClientContext context_;
  Frame out_;
  Frame in_;
  std::string expected_;
  std::mutex mu_;
  bool writing_ = false;
  bool closed_ = false;
  int sent_ = 0;
  int received_ = 0;
};

std::optional<Options> parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--target") {
      options.target = value;
    } else if (flag == "--streams") {
      options.streams = std::atoi(value);
    } else if (flag == "--messages") {
      options.messages = std::atoi(value);
    } else if (flag == "--window") {
      options.window = std::atoi(value);
    } else if (flag == "--channels") {
      options.channels = std::atoi(value);
    } else {
      return std::nullopt;
    }
  }
  if (argc % 2 == 0 || options.streams < 1 || options.messages < 1 || options.window < 1 ||
      options.channels < 1) {
    return std::nullopt;
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = parse(argc, argv);
  if (!options) {
    std::fprintf(stderr,
                 "usage: game_server_bench [--target HOST:PORT] [--streams N] [--messages N] "
                 "[--window N] [--channels N]\n");
    return 2;
  }
  Echo echo;
  std::unique_ptr<gatehouse::game::GameServer> server;
  std::string target = options->target;
  if (target.empty()) {
    server =
        std::make_unique<gatehouse::game::GameServer>(echo, gatehouse::game::GameServerOptions{});
    target = "127.0.0.1:" + std::to_string(server->port());
  }
  std::vector<std::unique_ptr<proto::GameService::Stub>> stubs;
  for (int c = 0; c < options->channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per channel
    stubs.push_back(proto::GameService::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args)));
  }

  Latch latch;
  latch.remaining = options->streams;
  const auto start = std::chrono::steady_clock::now();
  for (int s = 0; s < options->streams; ++s) {
    new EchoStream(*stubs[static_cast<std::size_t>(s % options->channels)], s + 1, *options, latch);
  }
  {
    std::unique_lock lock(latch.mu);
    latch.cv.wait(lock, [&] { return latch.remaining == 0; });
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  const double echoes = static_cast<double>(options->streams) * options->messages;
  std::printf(
      "{\"target\":\"%s\",\"streams\":%d,\"messages_per_stream\":%d,\"window\":%d,"
      "\"seconds\":%.3f,\"echoes_per_second\":%.0f,\"errors\":%ld}\n",
      options->target.empty() ? "in-process" : options->target.c_str(), options->streams,
      options->messages, options->window, took.count(), echoes / took.count(), latch.errors.load());
  return latch.errors.load() == 0 ? 0 : 1;
}
