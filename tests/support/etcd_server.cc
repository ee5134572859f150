#include "etcd_server.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <thread>
#include <vector>

#include "etcd_rpc.grpc.pb.h"
#include "local_port.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

/// Tells apart the temp dirs of one test process.
int next_serial() {
  static int serial = 0;
  return ++serial;
}

/// application/x-www-form-urlencoded (a v2 PUT's value=), or a path's bytes
/// (with '/' kept).
std::string escaped(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace

/// One keep-alive HTTP/1.1 connection to etcd's v2 keys API, blocking (with
/// socket timeouts: a test never hangs on it).
class EtcdServer::V2Client {
 public:
  explicit V2Client(std::uint16_t port) : port_(port) {}

  /// The reply's status, or 0 (with `error`) when the exchange failed (the
  /// connection is then made again next time).
  unsigned request(boost::beast::http::verb verb, const std::string& target,
                   const std::string& body, std::string* error) {
    namespace http = boost::beast::http;
    boost::system::error_code ec;
    if (!socket_.is_open()) {
      socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
      if (ec) return failed(ec, error);
      const timeval two_seconds{2, 0};
      ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &two_seconds,
                   sizeof two_seconds);
      ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &two_seconds,
                   sizeof two_seconds);
    }
    http::request<http::string_body> request(verb, target, 11);
    request.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    if (!body.empty()) {
      request.set(http::field::content_type, "application/x-www-form-urlencoded");
      request.body() = body;
    }
    request.prepare_payload();
    http::write(socket_, request, ec);
    if (ec) return failed(ec, error);
    http::response<http::string_body> response;
    http::read(socket_, buffer_, response, ec);
    if (ec) return failed(ec, error);
    if (!response.keep_alive()) socket_.close(ec);
    if (error != nullptr) *error = response.body();
    return response.result_int();
  }

 private:
  unsigned failed(boost::system::error_code ec, std::string* error) {
    if (error != nullptr) *error = ec.message();
    boost::system::error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
    return 0;
  }

  std::uint16_t port_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_{ioc_};
  boost::beast::flat_buffer buffer_;
};

bool EtcdServer::available() {
  return ::access(kBinary, X_OK) == 0;
}

EtcdServer::EtcdServer(EtcdApi api)
    : api_(api),
      dir_(std::filesystem::temp_directory_path() /
           ("gatehouse-etcd-" + std::to_string(::getpid()) + "-" + std::to_string(next_serial()))),
      client_port_(free_port()),
      peer_port_(free_port()) {
  std::filesystem::create_directories(dir_);
}

EtcdServer::~EtcdServer() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

bool EtcdServer::start() {
  const std::string client = url();
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> args{kBinary,
                                "--name",
                                "test",
                                "--data-dir",
                                (dir_ / "data").string(),
                                "--listen-client-urls",
                                client,
                                "--advertise-client-urls",
                                client,
                                "--listen-peer-urls",
                                peer,
                                "--initial-advertise-peer-urls",
                                peer,
                                "--initial-cluster",
                                "test=" + peer};
  if (api_ == EtcdApi::kV2) args.emplace_back("--enable-v2");
  process_.emplace(std::move(args), (dir_ / "etcd.log").string());
  return wait_listening(client_port_, kPatience);
}

void EtcdServer::stop() {
  v2_.reset();
  if (!process_) return;
  process_->kill(SIGTERM);
  process_->wait(kPatience);
  process_.reset();
}

bool EtcdServer::set(const std::string& key, const std::optional<std::string>& value,
                     std::string* error) {
  if (api_ == EtcdApi::kV2) return v2_request("/v2/keys" + escaped(key, true), value, error);
  return v3_request(key, value, "", error);
}

bool EtcdServer::remove_dir(const std::string& dir, std::string* error) {
  if (api_ == EtcdApi::kV2) {
    return v2_request("/v2/keys" + escaped(dir, true) + "?recursive=true", std::nullopt, error);
  }
  std::string prefix = dir + "/";
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  return v3_request(prefix, std::nullopt, end, error);
}

bool EtcdServer::v2_request(const std::string& target, const std::optional<std::string>& value,
                            std::string* error) {
  namespace http = boost::beast::http;
  if (!v2_) v2_ = std::make_unique<V2Client>(client_port_);
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  for (;;) {
    std::string reply;
    const unsigned status =
        value ? v2_->request(http::verb::put, target, "value=" + escaped(*value, false), &reply)
              : v2_->request(http::verb::delete_, target, "", &reply);
    if (status == 200 || status == 201) return true;
    if (status != 0 || std::chrono::steady_clock::now() > give_up) {
      if (error != nullptr) *error = "HTTP " + std::to_string(status) + ": " + reply;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // etcd is coming up
  }
}

bool EtcdServer::v3_request(const std::string& key, const std::optional<std::string>& value,
                            const std::string& range_end, std::string* error) {
  using namespace std::chrono_literals;
  auto stub =
      etcdserverpb::KV::NewStub(grpc::CreateChannel(target(), grpc::InsecureChannelCredentials()));
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
      del.set_range_end(range_end);
      etcdserverpb::DeleteRangeResponse reply;
      status = stub->DeleteRange(&context, del, &reply);
    }
    if (status.ok()) return true;
    if (std::chrono::steady_clock::now() > give_up) {
      if (error != nullptr) *error = status.error_message();
      return false;
    }
  }
}

std::optional<std::string> EtcdServer::get(const std::string& key, std::int64_t* lease) {
  auto stub =
      etcdserverpb::KV::NewStub(grpc::CreateChannel(target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse reply;
  if (!stub->Range(&context, request, &reply).ok() || reply.kvs_size() == 0) return std::nullopt;
  if (lease != nullptr) *lease = reply.kvs(0).lease();
  return reply.kvs(0).value();
}

void EtcdServer::wipe() {
  stop();
  std::filesystem::remove_all(dir_ / "data");
}

}  // namespace gatehouse::testing
