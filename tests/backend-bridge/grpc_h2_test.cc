// GrpcChannel (grpc_h2.h), the gonet2 contract's own gRPC client, against a
// real grpc++ server in the process whose Stream handler does what the
// call's `mode` metadata asks: echo, end with a status (a Trailers-Only
// response), report the metadata it got, flood, or wait to be cancelled;
// and against a TCP peer that does not speak HTTP/2. The test thread drives
// the channel as the bridge's main thread does (pump, park on the IoPoller).
#include "gatehouse/bridge/grpc_h2.h"

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "game.grpc.pb.h"
#include "gatehouse/base/clock.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using Frame = proto::Game::Frame;
constexpr auto kWait = 30s;

std::string metadata_of(grpc::ServerContext& context, const std::string& name) {
  const auto it = context.client_metadata().find(name);
  return it == context.client_metadata().end() ? ""
                                               : std::string(it->second.data(), it->second.size());
}

/// The game service: what each Stream does comes from its `mode`.
class TestGame final : public proto::GameService::Service {
 public:
  grpc::Status Stream(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<Frame, Frame>* stream) override {
    {
      std::lock_guard lock(mutex_);
      peers_.insert(context->peer());
    }
    const std::string mode = metadata_of(*context, "mode");
    Frame frame;
    if (mode == "echo") {
      while (stream->Read(&frame)) stream->Write(frame);
      return grpc::Status::OK;
    }
    if (mode == "status") {
      return {grpc::StatusCode::PERMISSION_DENIED, "no 100% sure way: \xc3\xa9t\xc3\xa9"};
    }
    if (mode == "metadata") {
      frame.set_message(metadata_of(*context, "userid") + "," +
                        metadata_of(*context, "gateway-id"));
      stream->Write(frame);
      return grpc::Status::OK;
    }
    if (mode == "flood") {
      frame.set_message(std::string(std::size_t{16} * 1024, 'f'));
      for (int i = 0; i < 64; ++i) {
        if (!stream->Write(frame)) break;
        flooded_.fetch_add(1);
      }
      return grpc::Status::OK;
    }
    if (mode == "wait") {
      while (!context->IsCancelled()) std::this_thread::sleep_for(5ms);
      cancelled_.fetch_add(1);
      return grpc::Status::CANCELLED;
    }
    return {grpc::StatusCode::INVALID_ARGUMENT, "unknown mode " + mode};
  }

  std::size_t peers() const {
    std::lock_guard lock(mutex_);
    return peers_.size();
  }
  std::atomic<int> flooded_{0};
  std::atomic<int> cancelled_{0};

 private:
  mutable std::mutex mutex_;
  std::set<std::string> peers_;
};

class GameServer {
 public:
  explicit GameServer(int port = 0) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&game_);
    server_ = builder.BuildAndStart();
  }
  ~GameServer() { stop(); }
  void stop() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 1s);
    server_.reset();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  TestGame game_;

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

/// A listening TCP socket on 127.0.0.1, any free port.
int loopback_listener(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4) != 0) {
    throw std::runtime_error("cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

/// A TCP relay in front of a server that can stop relaying (swallow()),
/// as a game host that vanished without closing anything looks.
class Relay {
 public:
  explicit Relay(int target_port) : listener_(loopback_listener(port_)) {
    thread_ = std::thread([this, target_port] { run(target_port); });
  }
  ~Relay() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  int port() const { return port_; }
  void swallow() { swallow_ = true; }

 private:
  void run(int target_port) {
    const int client = ::accept(listener_, nullptr, nullptr);
    if (client < 0) return;
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(target_port));
    if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      std::vector<char> buffer(std::size_t{64} * 1024);
      bool open = true;
      while (open && !stop_) {
        if (::poll(fds, 2, 50) <= 0) continue;
        for (int i = 0; i < 2 && open; ++i) {
          if (fds[i].revents == 0) continue;
          const ssize_t n = ::read(fds[i].fd, buffer.data(), buffer.size());
          if (n <= 0) {
            open = false;
          } else if (!swallow_) {
            for (ssize_t at = 0; at < n;) {
              const ssize_t w =
                  ::write(fds[1 - i].fd, buffer.data() + at, static_cast<std::size_t>(n - at));
              if (w <= 0) break;
              at += w;
            }
          }
        }
      }
    }
    ::close(server);
    ::close(client);
  }

  int port_ = 0;
  int listener_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> swallow_{false};
  std::thread thread_;
};

/// A call that records what happens to it.
class Recorder final : public GrpcCall {
 public:
  void on_message(std::span<const std::byte> message) override {
    Frame frame;
    ASSERT_TRUE(frame.ParseFromArray(message.data(), static_cast<int>(message.size())));
    messages.push_back(frame.message());
    if (pause_after != 0 && messages.size() == pause_after) pause_reads();
  }
  void on_end(std::int32_t c, std::string_view m, std::uint64_t u) override {
    ++ends;
    code = c;
    text = m;
    unsent = u;
  }
  std::vector<std::string> messages;
  std::size_t pause_after = 0;
  int ends = 0;
  std::int32_t code = -1;
  std::string text;
  std::uint64_t unsent = 0;
};

class GrpcH2Test : public ::testing::Test {
 protected:
  void make_channel(const std::string& address, GrpcChannelOptions options = {}) {
    options.in_flight = &in_flight_;
    channel_ = std::make_unique<GrpcChannel>(address, options, io_);
  }
  void start(Recorder& call, const std::string& mode, const std::string& user = "7") {
    const std::pair<std::string_view, std::string_view> metadata[] = {
        {"mode", mode}, {"userid", user}, {"gateway-id", "gw-1"}};
    channel_->start(call, "/proto.GameService/Stream", metadata, monotonic_ns());
  }
  bool write(Recorder& call, const std::string& text) {
    Frame frame;
    frame.set_message(text);
    return channel_->write(call, frame);
  }
  template <class Predicate>
  bool pump_until(Predicate done, std::chrono::steady_clock::duration timeout = kWait) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      channel_->pump(monotonic_ns());
      io_.wait(5ms);
    }
    return true;
  }

  std::atomic<std::int64_t> in_flight_{0};
  IoPoller io_;
  std::unique_ptr<GrpcChannel> channel_;
};

TEST_F(GrpcH2Test, EchoesMessagesInOrderIncludingOnesLargerThanTheWindow) {
  GameServer server;
  make_channel(server.address());
  Recorder call;
  start(call, "echo");
  std::vector<std::string> sent;
  for (int i = 0; i < 200; ++i) {
    // 1 MiB every 50th: larger than HTTP/2's 64 KiB window both ways, so it
    // crosses several DATA frames and window updates, and is gathered here.
    sent.push_back(i % 50 == 49 ? std::string(1 << 20, static_cast<char>('a' + i % 26))
                                : "m" + std::to_string(i));
    ASSERT_TRUE(write(call, sent.back()));
  }
  sent.push_back("");  // an empty message is one too
  ASSERT_TRUE(write(call, sent.back()));
  EXPECT_EQ(in_flight_.load(), 201) << "written, not yet handed to HTTP/2";
  ASSERT_TRUE(pump_until([&] { return call.messages.size() == sent.size(); }));
  EXPECT_EQ(call.messages, sent);
  EXPECT_EQ(in_flight_.load(), 0);
  channel_->close_send(call);
  EXPECT_FALSE(write(call, "after the half-close"));
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }));
  EXPECT_EQ(call.code, 0) << call.text;
}

TEST_F(GrpcH2Test, EveryCallSharesOneConnection) {
  GameServer server;
  make_channel(server.address());
  std::vector<Recorder> calls(50);
  for (std::size_t i = 0; i < calls.size(); ++i) {
    start(calls[i], "echo", std::to_string(i));
    ASSERT_TRUE(write(calls[i], "hello " + std::to_string(i)));
  }
  ASSERT_TRUE(pump_until([&] {
    return std::all_of(calls.begin(), calls.end(), [](auto& c) { return c.messages.size() == 1; });
  }));
  for (std::size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].messages[0], "hello " + std::to_string(i));
  }
  EXPECT_EQ(server.game_.peers(), 1u);
  EXPECT_EQ(channel_->calls(), calls.size());
  for (auto& c : calls) channel_->close_send(c);
  ASSERT_TRUE(pump_until([&] { return channel_->calls() == 0; }));
  for (auto& c : calls) EXPECT_EQ(c.code, 0);
}

TEST_F(GrpcH2Test, TheServersStatusAndMessageEndTheCall) {
  GameServer server;
  make_channel(server.address());
  Recorder call;
  start(call, "status");
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }));
  EXPECT_EQ(call.code, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call.text, "no 100% sure way: \xc3\xa9t\xc3\xa9") << "percent-decoded";
  // Ended once, and nothing follows (the stream's close comes after).
  ASSERT_TRUE(pump_until([&] { return channel_->calls() == 0; }));
  channel_->pump(monotonic_ns());
  EXPECT_EQ(call.ends, 1);
}

TEST_F(GrpcH2Test, MetadataReachesTheServer) {
  GameServer server;
  make_channel(server.address());
  Recorder call;
  start(call, "metadata", "123456789012");
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }));
  ASSERT_EQ(call.messages.size(), 1u);
  EXPECT_EQ(call.messages[0], "123456789012,gw-1");
  EXPECT_EQ(call.code, 0);
}

TEST_F(GrpcH2Test, CancelEndsTheCallCancelledAndTheServerSeesIt) {
  GameServer server;
  make_channel(server.address());
  Recorder call;
  start(call, "wait");
  ASSERT_TRUE(pump_until([&] { return channel_->ready(monotonic_ns()); }));
  pump_until([] { return false; }, 100ms);  // the server has the call
  channel_->cancel(call);
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }));
  EXPECT_EQ(call.code, grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(pump_until([&] { return server.game_.cancelled_.load() == 1; }));
}

TEST_F(GrpcH2Test, PausedReadsHoldTheServerBackUntilResumed) {
  GameServer server;
  make_channel(server.address());
  Recorder call;
  call.pause_after = 1;
  start(call, "flood");
  ASSERT_TRUE(pump_until([&] { return !call.messages.empty(); }));
  // Nothing more is delivered, and the stream's 64 KiB window is not given
  // back, however long we read.
  pump_until([] { return false; }, 500ms);
  EXPECT_EQ(call.messages.size(), 1u);
  EXPECT_LT(server.game_.flooded_.load(), 64) << "the server is held back";
  channel_->resume(call);
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }));
  EXPECT_EQ(call.messages.size(), 64u);
  EXPECT_EQ(call.code, 0);
}

TEST_F(GrpcH2Test, AnUnreachableServiceFailsCallsFastThenConnectsWhenItComes) {
  int port = 0;
  {
    GameServer probe;  // a free port, then nobody on it
    port = probe.port();
  }
  make_channel("127.0.0.1:" + std::to_string(port));
  Recorder first;
  start(first, "echo");
  ASSERT_TRUE(pump_until([&] { return first.ends == 1; }));
  EXPECT_EQ(first.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(first.text.find("refused"), std::string::npos) << first.text;
  Recorder second;  // backing off: ends at once
  start(second, "echo");
  EXPECT_EQ(second.ends, 1);
  EXPECT_EQ(second.code, grpc::StatusCode::UNAVAILABLE);

  GameServer server(port);
  ASSERT_TRUE(pump_until([&] { return channel_->ready(monotonic_ns()); }));
  Recorder third;
  start(third, "echo");
  ASSERT_TRUE(write(third, "back"));
  ASSERT_TRUE(pump_until([&] { return third.messages.size() == 1; }));
  channel_.reset();  // before the call it still has
}

TEST_F(GrpcH2Test, AServerThatGoesEndsItsCallsUnavailableAndANewOneIsUsed) {
  auto server = std::make_unique<GameServer>();
  const int port = server->port();
  make_channel(server->address());
  Recorder call;
  start(call, "echo");
  ASSERT_TRUE(write(call, "one"));
  ASSERT_TRUE(pump_until([&] { return call.messages.size() == 1; }));
  std::thread stopper([&] { server->stop(); });
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }));
  stopper.join();
  EXPECT_NE(call.code, 0);

  server = std::make_unique<GameServer>(port);
  Recorder again;
  ASSERT_TRUE(pump_until([&] { return channel_->ready(monotonic_ns()); }));
  start(again, "echo");
  ASSERT_TRUE(write(again, "two"));
  ASSERT_TRUE(pump_until([&] { return again.messages.size() == 1; }));
  channel_.reset();  // before the call it still has
}

TEST_F(GrpcH2Test, APeerThatDoesNotSpeakHttp2EndsTheCallUnavailableWithTheReason) {
  int port = 0;
  const int listener = loopback_listener(port);
  std::thread peer([listener] {
    const int fd = ::accept(listener, nullptr, nullptr);
    const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    (void)!::write(fd, reply, sizeof reply - 1);
    std::this_thread::sleep_for(2s);
    ::close(fd);
  });
  make_channel("127.0.0.1:" + std::to_string(port));
  Recorder call;
  start(call, "echo");
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }));
  EXPECT_EQ(call.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(call.text.find("HTTP/2"), std::string::npos) << call.text;
  peer.join();
  ::close(listener);
}

TEST_F(GrpcH2Test, AGameServiceThatFallsSilentIsFoundByAnUnansweredPing) {
  GameServer server;
  Relay relay(server.port());
  GrpcChannelOptions options;
  options.keepalive_interval = 300ms;
  options.keepalive_timeout = 500ms;
  make_channel("127.0.0.1:" + std::to_string(relay.port()), options);
  Recorder call;
  start(call, "echo");
  ASSERT_TRUE(write(call, "alive"));
  ASSERT_TRUE(pump_until([&] { return call.messages.size() == 1; }));
  // Quiet for longer than the interval: the PINGs are answered.
  pump_until([] { return false; }, 1s);
  EXPECT_EQ(call.ends, 0) << call.text;
  relay.swallow();  // the game's host is gone: nothing comes back, nothing is refused
  ASSERT_TRUE(pump_until([&] { return call.ends == 1; }, 10s));
  EXPECT_EQ(call.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(call.text.find("PING"), std::string::npos) << call.text;
}

TEST_F(GrpcH2Test, AChannelThatGoesEndsItsCalls) {
  GameServer server;
  make_channel(server.address());
  Recorder call;
  start(call, "echo");
  ASSERT_TRUE(write(call, "unsent"));
  channel_.reset();
  EXPECT_EQ(call.ends, 1);
  EXPECT_EQ(call.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(call.unsent, 1u);
  EXPECT_EQ(in_flight_.load(), 0);
}

}  // namespace
}  // namespace gatehouse::bridge
