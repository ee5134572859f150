#include "etcd_server.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
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

}  // namespace

bool EtcdServer::available() {
  return ::access(kBinary, X_OK) == 0;
}

EtcdServer::EtcdServer()
    : dir_(std::filesystem::temp_directory_path() /
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
  process_.emplace(
      std::vector<std::string>{kBinary, "--name", "test", "--data-dir", (dir_ / "data").string(),
                               "--listen-client-urls", client, "--advertise-client-urls", client,
                               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                               "--initial-cluster", "test=" + peer},
      (dir_ / "etcd.log").string());
  return wait_listening(client_port_, kPatience);
}

void EtcdServer::stop() {
  if (!process_) return;
  process_->kill(SIGTERM);
  process_->wait(kPatience);
  process_.reset();
}

bool EtcdServer::set(const std::string& key, const std::optional<std::string>& value,
                     std::string* error) {
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
