// GatewayProcess: the real gateway (build/bin/gatehouse and its children) for
// integration tests: a unique instance name, port 0 read back from the ready
// file, output in a log file the test can search, and access to the
// segment's control block for the children's pids.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "child_process.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/crypto/modern_crypto.h"
#include "patience.h"

namespace gatehouse::testing {

using Duration = std::chrono::milliseconds;

struct GatewayOptions {
  int backend_port = 0;                 ///< game service on 127.0.0.1
  std::uint32_t workers = 1;            ///< one worker: every session shares it
  std::vector<std::string> extra_args;  ///< e.g. {"--rpm-limit", "5"}
  /// Lines "<token> <user id>", written hashed for --login tokens:FILE;
  /// empty: the default login (any, on the loopback listener).
  std::vector<std::string> tokens;
  /// The backend speaks the batched contract (--backend batch:HOST:PORT).
  bool batched = false;
  /// --listen; port 0 picks one (read back from the ready file).
  std::string listen = "127.0.0.1:0";
  /// Gateway keys made for it (gatehouse keygen) and given as --gateway-key,
  /// so that modern clients can pin gateway_key(i).
  std::uint32_t gateway_keys = 1;
  /// false: no --backend line (discovery through etcd, in extra_args).
  bool backend_line = true;
  /// A command the gateway runs under: wrapper + {gatehouse, args...}
  /// (e.g. unit_sandbox, which applies a unit file's restrictions).
  std::vector<std::string> wrapper{};
  /// --frontends (the gateway's own default depends on the CPUs: tests pin
  /// the shape they test, as with workers).
  std::uint32_t frontends = 1;
  /// --bridges (pinned as frontends are).
  std::uint32_t bridges = 1;
};

class GatewayProcess {
 public:
  explicit GatewayProcess(GatewayOptions options);
  ~GatewayProcess();

  /// The first listener's port; port(i) the i-th --listen's (extra --listen
  /// lines in extra_args come after options.listen).
  std::uint16_t port() const { return ports_.at(0); }
  std::uint16_t port(std::size_t i) const { return ports_.at(i); }
  std::uint16_t metrics_port() const { return metrics_port_; }
  pid_t pid() const { return supervisor_->pid(); }
  const std::string& instance() const { return instance_; }
  /// The public half of its i-th gateway key, and the files of the pair.
  const modern::PublicKey& gateway_key(std::size_t i = 0) const { return gateway_keys_.at(i); }
  std::string gateway_key_file(std::size_t i = 0) const;
  std::string gateway_public_key_file(std::size_t i = 0) const {
    return gateway_key_file(i) + ".pub";
  }
  /// The temp directory of this gateway (removed with it).
  const std::string& dir() const { return dir_; }
  /// Its admin socket (gatehousectl --socket), in dir().
  std::string admin_socket() const { return dir_ + "/admin.sock"; }

  /// Everything the gateway's processes have logged so far.
  std::string log() const;
  /// Waits until the log contains `needle`; true if it did within `timeout`.
  bool wait_log(const std::string& needle, Duration timeout = kPatience) const;
  /// How many times `needle` occurs in the log.
  std::size_t log_count(const std::string& needle) const;
  /// Waits until `needle` occurs at least `n` times.
  bool wait_log_count(const std::string& needle, std::size_t n, Duration timeout = kPatience) const;

  /// SIGTERM and wait: the exit status, or nullopt if it did not exit in time.
  std::optional<int> terminate(Duration timeout = kPatience);

  /// The gateway's segment, attached by the test (to read, or to corrupt).
  GatewaySegment& segment() { return *segment_; }

  /// Child pids from the control block (0 when not running).
  pid_t worker_pid(std::uint32_t index) const;
  pid_t frontend_pid() const;
  /// Frontend `index`'s (with --frontends above 1).
  pid_t frontend_pid(std::uint32_t index) const;
  pid_t bridge_pid() const;
  /// Bridge `index`'s (with --bridges above 1).
  pid_t bridge_pid(std::uint32_t index) const;

 private:
  std::string instance_;
  std::string dir_;
  std::string log_path_;
  std::optional<ChildProcess> supervisor_;
  std::optional<GatewaySegment> segment_;
  std::vector<std::uint16_t> ports_;
  std::uint16_t metrics_port_ = 0;
  std::vector<modern::PublicKey> gateway_keys_;
};

/// Runs `gatehouse keygen --out path` (the command operators run) and
/// returns the public key it wrote to path.pub.
modern::PublicKey make_gateway_key(const std::string& path);

/// True when process `pid` no longer exists (zombies count as gone).
bool process_gone(pid_t pid);

}  // namespace gatehouse::testing
