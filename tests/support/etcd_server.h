// EtcdServer: a real etcd (Debian's etcd-server, /usr/bin/etcd) for tests,
// one member of its own on free loopback ports, its data in a temp dir kept
// across stop() and start() (as a restarted etcd keeps its store). Tests of
// discovery (docs/discovery.md) write and delete keys with set(); those of
// the gateway's own key read it with get().
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "child_process.h"

namespace gatehouse::testing {

class EtcdServer {
 public:
  static constexpr const char* kBinary = "/usr/bin/etcd";
  /// Whether etcd is installed (tests skip without it).
  static bool available();

  EtcdServer();
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

  /// Writes `key` = `value`, or deletes `key` (no value), over etcd's v3 API;
  /// retries while etcd comes up. False (with `error`) when it never took it
  /// within kPatience.
  bool set(const std::string& key, const std::optional<std::string>& value,
           std::string* error = nullptr);
  /// The value of `key` (and in `lease` the lease it is attached to, 0 for
  /// none), nullopt when etcd has no such key or did not answer within 2 s.
  std::optional<std::string> get(const std::string& key, std::int64_t* lease = nullptr);
  /// Stopped: deletes its data, so that the next start() is an etcd that
  /// lost every key and lease (a member rebuilt from nothing).
  void wipe();

 private:
  std::filesystem::path dir_;
  std::uint16_t client_port_;
  std::uint16_t peer_port_;
  std::optional<ChildProcess> process_;
};

}  // namespace gatehouse::testing
