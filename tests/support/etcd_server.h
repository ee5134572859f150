// EtcdServer: a real etcd (Debian's etcd-server, /usr/bin/etcd) for tests,
// one member of its own on free loopback ports, its data in a temp dir kept
// across stop() and start() (as a restarted etcd keeps its store). Tests of
// discovery (docs/discovery.md) write and delete keys with set(), over the
// API the server was made for: v3 (gRPC), or v2 (the keys API over HTTP,
// served with --enable-v2; their keys are apart); those of the gateway's
// own key read it with get() (v3).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "child_process.h"
#include "gatehouse/contract/control.h"

namespace gatehouse::testing {

class EtcdServer {
 public:
  static constexpr const char* kBinary = "/usr/bin/etcd";
  /// Whether etcd is installed (tests skip without it).
  static bool available();

  explicit EtcdServer(EtcdApi api = EtcdApi::kV3);
  /// Stops it and removes its directory.
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  /// Starts it (again) on its ports; true once it listens (within kPatience).
  bool start();
  /// SIGTERM, and waits for it to exit.
  void stop();
  /// HOST:PORT of its client URL, and that URL (http://HOST:PORT).
  std::string target() const { return "127.0.0.1:" + std::to_string(client_port_); }
  std::string url() const { return "http://" + target(); }

  EtcdApi api() const { return api_; }

  /// Writes `key` = `value`, or deletes `key` (no value), over the server's
  /// API; retries while etcd comes up. False (with `error`) when it never
  /// took it within kPatience.
  bool set(const std::string& key, const std::optional<std::string>& value,
           std::string* error = nullptr);
  /// Deletes the directory `dir` and everything under it (v3: every key
  /// with the prefix DIR/).
  bool remove_dir(const std::string& dir, std::string* error = nullptr);
  /// The value of `key` (and in `lease` the lease it is attached to, 0 for
  /// none), nullopt when etcd has no such key or did not answer within 2 s.
  std::optional<std::string> get(const std::string& key, std::int64_t* lease = nullptr);
  /// Stopped: deletes its data, so that the next start() is an etcd that
  /// lost every key and lease (a member rebuilt from nothing).
  void wipe();

 private:
  class V2Client;
  /// A v2 keys request (PUT with `value`, else DELETE) on `target`
  /// (/v2/keys/KEY?...), retried as set() says.
  bool v2_request(const std::string& target, const std::optional<std::string>& value,
                  std::string* error);
  /// A v3 Put, or DeleteRange of [key, range_end), retried as set() says.
  bool v3_request(const std::string& key, const std::optional<std::string>& value,
                  const std::string& range_end, std::string* error);

  EtcdApi api_;
  std::filesystem::path dir_;
  std::uint16_t client_port_;
  std::uint16_t peer_port_;
  std::optional<ChildProcess> process_;
  std::unique_ptr<V2Client> v2_;  // one connection for many writes
};

}  // namespace gatehouse::testing
