// The bridge's calls to the auth service (login = auth:, auth_client.h)
// against a real gRPC Auth service in this process, the verdicts read from
// the worker's ring as the worker reads them: an answer, a refusal naming
// its user, a slow service (auth_timeout), too many logins at once
// (auth_busy), a service that is down or answers nonsense
// (auth_unavailable), a stop, and a new address.
#include "gatehouse/bridge/auth_client.h"

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "auth.grpc.pb.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/contract/records.h"
#include "patience.h"
#include "test_segment.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;

/// A user centre for the test: answers after `delay`, as `answer` says.
class TestAuthService final : public auth::Auth::Service {
 public:
  grpc::Status Login(grpc::ServerContext* context, const auth::LoginRequest* request,
                     auth::LoginReply* reply) override {
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(*request);
    }
    const auto until = std::chrono::steady_clock::now() + delay;
    while (std::chrono::steady_clock::now() < until && !context->IsCancelled()) {
      std::this_thread::sleep_for(5ms);
    }
    *reply = answer;
    return grpc::Status::OK;
  }
  std::vector<auth::LoginRequest> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

  std::chrono::milliseconds delay{0};
  auth::LoginReply answer;

 private:
  std::mutex mutex_;
  std::vector<auth::LoginRequest> seen_;
};

class AuthServer {
 public:
  explicit AuthServer(TestAuthService& service) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service);
    server_ = builder.BuildAndStart();
  }
  ~AuthServer() { server_->Shutdown(std::chrono::system_clock::now() + 1s); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

std::uint64_t conn(std::uint32_t slot) {
  return shm::ConnectionId(3, slot).value();
}

class AuthClientTest : public ::testing::Test {
 protected:
  AuthClientTest()
      : settings_(base_settings()),
        segment_(testing::make_segment(settings_)),
        doorbell_(shm::Doorbell::create()),
        wakeup_(doorbell_),
        rings_((workers_.push_back(std::make_unique<WorkerLink>(
                    segment_, 0, 0, shm::Doorbell::create(), 1'000'000'000, settings_)),
                workers_),
               settings_, wakeup_),
        from_bridge_(segment_.ring(RingKind::kBridgeToWorker, 0)),
        client_(calls_, rings_, "test-gateway/1") {
    server_ = std::make_unique<AuthServer>(service_);
    configure(server_->address());
  }
  ~AuthClientTest() override { client_.cancel_all(); }

  static Settings base_settings() {
    Settings s = testing::test_settings(1);
    s.auth_timeout_ms = 5000;
    s.auth_max_inflight = 100;
    return s;
  }

  void configure(const std::string& address, std::uint32_t timeout_ms = 5000,
                 std::uint32_t max_inflight = 100) {
    Settings s = settings_;
    s.login_mode = LoginMode::kAuthService;
    std::snprintf(s.login_file, sizeof s.login_file, "%s", address.c_str());
    s.auth_timeout_ms = timeout_ms;
    s.auth_max_inflight = max_inflight;
    client_.configure(s);
  }

  /// A login of `credential` from 10.0.0.1:5555 on `slot`'s connection.
  void check(std::uint32_t slot, std::string_view credential = "ann:secret") {
    protocol::LoginRequest login;
    login.open_udid = "device-7";
    login.client_certificate = credential;
    login.login_way = 3;
    std::vector<std::byte> body;
    protocol::encode_login(login, body);
    ipc::Parsed<ipc::AuthRequest> request{};
    request.header.conn = conn(slot);
    const std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
    std::memcpy(request.header.address, mapped, sizeof mapped);
    request.header.port = 5555;
    request.tail = body;
    client_.check(request);
  }

  /// The verdicts the worker ring holds until `n` have come (or kPatience).
  std::vector<ipc::AuthVerdict> verdicts(std::size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + gatehouse::testing::kPatience;
    while (got_.size() < n && std::chrono::steady_clock::now() < deadline) {
      from_bridge_.read(
          [&](const shm::Record& r) {
            EXPECT_EQ(r.type, ipc::kAuthVerdict);
            got_.push_back(ipc::parse_record<ipc::AuthVerdict>(r.payload)->header);
            return true;
          },
          100);
      std::this_thread::sleep_for(2ms);
    }
    return got_;
  }

  static LoginRefusal refusal(const ipc::AuthVerdict& v) {
    return static_cast<LoginRefusal>(v.refusal);
  }

  TestAuthService service_;
  std::unique_ptr<AuthServer> server_;
  const Settings settings_;
  GatewaySegment segment_;
  shm::Doorbell doorbell_;
  Wakeup wakeup_;
  std::vector<std::unique_ptr<WorkerLink>> workers_;
  WorkerRings rings_;
  shm::RingConsumer from_bridge_;
  CallQueue calls_;
  AuthClient client_;
  std::vector<ipc::AuthVerdict> got_;
};

TEST_F(AuthClientTest, TheServicesAnswerIsTheVerdictAndItSeesTheLoginAsSent) {
  service_.answer.set_result(auth::LoginReply::OK);
  service_.answer.set_user_id(4321);
  check(2);
  const auto got = verdicts(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].conn, conn(2));
  EXPECT_EQ(got[0].user_id, 4321);

  const auto seen = service_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].client_certificate(), "ann:secret");
  EXPECT_EQ(seen[0].open_udid(), "device-7");
  EXPECT_EQ(seen[0].login_way(), 3);
  EXPECT_EQ(seen[0].remote_address(), "10.0.0.1");
  EXPECT_EQ(seen[0].remote_port(), 5555u);
  EXPECT_EQ(seen[0].gateway_id(), "test-gateway/1");
  EXPECT_EQ(client_.in_flight(), 0u);
}

TEST_F(AuthClientTest, ARefusalNamesTheUserTheServiceNamed) {
  service_.answer.set_result(auth::LoginReply::REFUSED);
  service_.answer.set_claimed_user_id(77);
  service_.answer.set_detail("wrong password");
  check(1, "ann:wrong");
  const auto got = verdicts(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].user_id, 0);
  EXPECT_EQ(refusal(got[0]), LoginRefusal::kAuthRefused);
  EXPECT_EQ(got[0].claimed_user_id, 77);
}

TEST_F(AuthClientTest, AnAnswerThatNamesNoUserIsNoAnswer) {
  service_.answer.set_result(auth::LoginReply::OK);
  service_.answer.set_user_id(0);
  check(1);
  const auto got = verdicts(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(refusal(got[0]), LoginRefusal::kAuthUnavailable);
}

TEST_F(AuthClientTest, ASlowServiceTimesOut) {
  service_.delay = 3000ms;
  service_.answer.set_user_id(5);
  configure(server_->address(), /*timeout_ms=*/200);
  const auto start = std::chrono::steady_clock::now();
  check(1);
  const auto got = verdicts(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(refusal(got[0]), LoginRefusal::kAuthTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2900ms) << "refused at the deadline";
}

TEST_F(AuthClientTest, LoginsBeyondTheBoundAreRefusedAtOnce) {
  service_.delay = 1000ms;
  service_.answer.set_user_id(5);
  configure(server_->address(), 10000, /*max_inflight=*/2);
  check(1);
  check(2);
  EXPECT_EQ(client_.in_flight(), 2u);
  check(3);
  // The third is refused before either call is answered.
  auto got = verdicts(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].conn, conn(3));
  EXPECT_EQ(refusal(got[0]), LoginRefusal::kAuthBusy);
  got = verdicts(3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].user_id, 5);
  EXPECT_EQ(got[2].user_id, 5);
  EXPECT_EQ(client_.in_flight(), 0u);
}

TEST_F(AuthClientTest, AServiceThatIsDownIsUnavailable) {
  server_.reset();  // its port is closed now
  service_.answer.set_user_id(5);
  configure("127.0.0.1:1");
  check(1);
  const auto got = verdicts(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(refusal(got[0]), LoginRefusal::kAuthUnavailable);
}

TEST_F(AuthClientTest, AStopRefusesTheCallsUpAndEveryLoginAfter) {
  service_.delay = 10000ms;
  check(1);
  client_.cancel_all();
  check(2);
  const auto got = verdicts(2);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& v : got) EXPECT_EQ(refusal(v), LoginRefusal::kAuthUnavailable);
}

TEST_F(AuthClientTest, ANewAddressTakesTheLoginsAfterIt) {
  TestAuthService other;
  other.answer.set_user_id(99);
  const AuthServer other_server(other);
  service_.answer.set_user_id(11);
  check(1);
  ASSERT_EQ(verdicts(1).at(0).user_id, 11);
  configure(other_server.address());
  check(2);
  ASSERT_EQ(verdicts(2).at(1).user_id, 99);
  EXPECT_EQ(other.seen().size(), 1u);

  // And login moved away from auth: nothing to ask.
  client_.configure(settings_);
  check(3);
  EXPECT_EQ(refusal(verdicts(3).at(2)), LoginRefusal::kAuthUnavailable);
}

}  // namespace
}  // namespace gatehouse::bridge
