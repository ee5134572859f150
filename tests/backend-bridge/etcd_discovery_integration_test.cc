// EtcdDiscovery against a real etcd (Debian's etcd-server, /usr/bin/etcd),
// started by the test on free loopback ports in a temp dir: the first read,
// the watch (instances joining and leaving), etcd stopping and coming back
// (the view stays, goes stale, and catches up), and an unreachable etcd at
// start (a prompt false, never a hang).
#include "gatehouse/bridge/etcd_discovery.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "child_process.h"
#include "etcd_rpc.grpc.pb.h"
#include "gatehouse/shm/doorbell.h"
#include "local_port.h"
#include "patience.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::kPatience;

constexpr const char* kEtcd = "/usr/bin/etcd";

/// Tells apart the temp dirs of one test process.
int next_serial() {
  static int serial = 0;
  return ++serial;
}

/// One etcd member of its own, on free ports, its data in a temp dir (kept
/// across stop() and start(), as a restarted etcd keeps its store).
class EtcdServer {
 public:
  EtcdServer()
      : dir_(
            std::filesystem::temp_directory_path() /
            ("gatehouse-etcd-" + std::to_string(::getpid()) + "-" + std::to_string(next_serial()))),
        client_port_(testing::free_port()),
        peer_port_(testing::free_port()) {
    std::filesystem::create_directories(dir_);
  }
  ~EtcdServer() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  bool start() {
    const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    process_.emplace(
        std::vector<std::string>{kEtcd, "--name", "test", "--data-dir", (dir_ / "data").string(),
                                 "--listen-client-urls", client, "--advertise-client-urls", client,
                                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                 "--initial-cluster", "test=" + peer},
        (dir_ / "etcd.log").string());
    return testing::wait_listening(client_port_, kPatience);
  }
  void stop() {
    if (!process_) return;
    process_->kill(SIGTERM);
    process_->wait(kPatience);
    process_.reset();
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(client_port_); }
  std::string url() const { return "http://" + target(); }

  /// Writes (or, with no value, deletes) a key; retries while etcd comes up.
  void set(const std::string& key, std::optional<std::string> value) {
    auto stub = etcdserverpb::KV::NewStub(
        grpc::CreateChannel(target(), grpc::InsecureChannelCredentials()));
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    for (;;) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + 2s);
      context.set_wait_for_ready(true);
      grpc::Status status;
      if (value) {
        etcdserverpb::PutRequest put;
        put.set_key(key);
        put.set_value(*value);
        etcdserverpb::PutResponse reply;
        status = stub->Put(&context, put, &reply);
      } else {
        etcdserverpb::DeleteRangeRequest del;
        del.set_key(key);
        etcdserverpb::DeleteRangeResponse reply;
        status = stub->DeleteRange(&context, del, &reply);
      }
      if (status.ok()) return;
      ASSERT_LT(std::chrono::steady_clock::now(), give_up) << status.error_message();
    }
  }

 private:
  std::filesystem::path dir_;
  std::uint16_t client_port_;
  std::uint16_t peer_port_;
  std::optional<ChildProcess> process_;
};

class EtcdDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kEtcd, X_OK) != 0) GTEST_SKIP() << kEtcd << " is not installed (etcd-server)";
    ASSERT_TRUE(etcd_.start());
  }

  std::unique_ptr<EtcdDiscovery> discovery() {
    std::string error;
    DiscoveryOptions options{
        parse_etcd_endpoints(etcd_.url(), &error), "/backends", {"game-10000"}};
    EXPECT_EQ(error, "");
    return std::make_unique<EtcdDiscovery>(options, wakeup_);
  }

  /// The latest view once `done` holds for it (the views come whole).
  template <class Done>
  DiscoveryView wait_view(EtcdDiscovery& d, Done done) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < give_up) {
      if (auto view = d.take_view()) {
        last_ = *view;
        if (done(last_)) return last_;
      }
      doorbell_.wait(50ms);
    }
    ADD_FAILURE() << "the view never became what was expected";
    return last_;
  }

  EtcdServer etcd_;
  shm::Doorbell doorbell_ = shm::Doorbell::create();
  Wakeup wakeup_{doorbell_};
  DiscoveryView last_;
};

TEST(EtcdEndpoints, TakesGonet2sFormAndRefusesWhatItCannotReach) {
  std::string error;
  EXPECT_EQ(parse_etcd_endpoints("http://127.0.0.1:2379, http://10.0.0.2:2379/", &error),
            (std::vector<std::string>{"127.0.0.1:2379", "10.0.0.2:2379"}));
  EXPECT_EQ(error, "");
  EXPECT_TRUE(parse_etcd_endpoints("https://127.0.0.1:2379", &error).empty());
  EXPECT_NE(error.find("https"), std::string::npos);
  EXPECT_TRUE(parse_etcd_endpoints("", &error).empty());
}

TEST_F(EtcdDiscoveryTest, ReadsTheTreeThenFollowsInstancesJoiningAndLeaving) {
  etcd_.set("/backends/game-10000/game1", "127.0.0.1:7001");
  etcd_.set("/backends/game-10000/game2", "127.0.0.1:7002");
  etcd_.set("/backends/chat-1/chat1", "127.0.0.1:7100");     // not in services
  etcd_.set("/backends/game-10000/deep/er", "127.0.0.1:1");  // not SERVICE/INSTANCE
  auto d = discovery();
  ASSERT_TRUE(d->read(5s));
  EXPECT_EQ(
      d->take_view(),
      (DiscoveryView{{"game-10000", {{"game1", "127.0.0.1:7001"}, {"game2", "127.0.0.1:7002"}}}}));
  d->start();
  const auto up_by = std::chrono::steady_clock::now() + kPatience;
  while (d->stale_since_ns() != 0 && std::chrono::steady_clock::now() < up_by)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(d->stale_since_ns(), 0);

  etcd_.set("/backends/game-10000/game3", "127.0.0.1:7003");
  auto view = wait_view(*d, [](const DiscoveryView& v) {
    return v.count("game-10000") != 0 && v.at("game-10000").size() == 3;
  });
  EXPECT_EQ(view["game-10000"]["game3"], "127.0.0.1:7003");
  etcd_.set("/backends/game-10000/game1", std::nullopt);
  view = wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 2; });
  EXPECT_EQ(view["game-10000"].count("game1"), 0u);
  const auto counts = d->take_counts();
  EXPECT_EQ(counts.puts, 1u);
  EXPECT_EQ(counts.deletes, 1u);
}

TEST_F(EtcdDiscoveryTest, KeepsTheViewWhileEtcdIsDownAndCatchesUpWhenItReturns) {
  etcd_.set("/backends/game-10000/game1", "127.0.0.1:7001");
  auto d = discovery();
  ASSERT_TRUE(d->read(5s));
  d->start();
  etcd_.set("/backends/game-10000/game2", "127.0.0.1:7002");
  wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 2; });

  etcd_.stop();
  const auto down_by = std::chrono::steady_clock::now() + kPatience;
  while (d->stale_since_ns() == 0 && std::chrono::steady_clock::now() < down_by)
    std::this_thread::sleep_for(10ms);
  EXPECT_NE(d->stale_since_ns(), 0) << "the view's age is not reported while etcd is down";
  EXPECT_FALSE(d->take_view().has_value()) << "the last known view stays as it was";

  ASSERT_TRUE(etcd_.start());
  // A change made as soon as etcd is back: the watch resumes from the
  // revision after the last event it saw, so it gets this one, and only once.
  etcd_.set("/backends/game-10000/game3", "127.0.0.1:7003");
  etcd_.set("/backends/game-10000/game2", std::nullopt);
  const auto view = wait_view(*d, [](const DiscoveryView& v) {
    return v.at("game-10000").size() == 2 && v.at("game-10000").count("game3") != 0;
  });
  EXPECT_EQ(view.at("game-10000"),
            (ServiceInstances{{"game1", "127.0.0.1:7001"}, {"game3", "127.0.0.1:7003"}}));
  const auto back_by = std::chrono::steady_clock::now() + kPatience;
  while (d->stale_since_ns() != 0 && std::chrono::steady_clock::now() < back_by)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(d->stale_since_ns(), 0);
  const auto counts = d->take_counts();
  EXPECT_EQ(counts.puts, 2u);  // game2 and game3, each once: nothing replayed
  EXPECT_EQ(counts.deletes, 1u);
}

TEST_F(EtcdDiscoveryTest, UnreachableEtcdAtStartIsAPromptNo) {
  std::string error;
  DiscoveryOptions options{
      parse_etcd_endpoints("http://127.0.0.1:" + std::to_string(testing::free_port()), &error),
      "/backends",
      {"game-10000"}};
  EtcdDiscovery d(options, wakeup_);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(d.read(1s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_NE(d.stale_since_ns(), 0);
}

}  // namespace
}  // namespace gatehouse::bridge
