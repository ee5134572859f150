#include "gateway_process.h"

#include "gatehouse/token/token_file.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "gatehouse/crypto/gateway_key_file.h"

namespace gatehouse::testing {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

modern::PublicKey make_gateway_key(const std::string& path) {
  ChildProcess keygen({std::string(GATEHOUSE_BIN_DIR) + "/gatehouse", "keygen", "--out", path},
                      path + ".keygen.log");
  const auto status = keygen.wait(kPatience);
  if (!status || *status != 0) {
    throw std::runtime_error("gatehouse keygen failed: " + read_file(path + ".keygen.log"));
  }
  return modern::read_public_key_file(path + ".pub").front();
}

std::string GatewayProcess::gateway_key_file(std::size_t i) const {
  return dir_ + "/gateway-" + std::to_string(i) + ".key";
}

GatewayProcess::GatewayProcess(GatewayOptions options) {
  static std::atomic<int> counter{0};
  instance_ = "test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  dir_ = (std::filesystem::temp_directory_path() / ("gatehouse-" + instance_)).string();
  // A directory of this name is a killed run's (its pid was ours): keys
  // left in it would make keygen refuse to write them again.
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  log_path_ = dir_ + "/gateway.log";
  const std::string ready = dir_ + "/ready";

  std::vector<std::string> argv{std::string(GATEHOUSE_BIN_DIR) + "/gatehouse",
                                "--instance",
                                instance_,
                                "--listen",
                                options.listen,
                                "--ready-file",
                                ready,
                                "--workers",
                                std::to_string(options.workers),
                                "--frontends",
                                std::to_string(options.frontends),
                                "--bridges",
                                std::to_string(options.bridges),
                                "--metrics-listen",
                                "127.0.0.1:0",
                                "--admin-socket",
                                admin_socket(),
                                "--log-level",
                                "debug"};
  if (options.backend_line) {
    argv.insert(argv.end(), {"--backend", (options.batched ? "batch:127.0.0.1:" : "127.0.0.1:") +
                                              std::to_string(options.backend_port)});
  }
  // A small session table unless the test sizes it.
  if (std::find(options.extra_args.begin(), options.extra_args.end(), "--max-connections") ==
      options.extra_args.end()) {
    argv.insert(argv.end(), {"--max-connections", "1024"});
  }
  if (!options.tokens.empty()) {
    const std::string tokens = dir_ + "/tokens";
    // The gateway reads hashed tables only: the fixture hashes the test's.
    std::ostringstream plain;
    for (const auto& line : options.tokens) plain << line << "\n";
    std::istringstream in(plain.str());
    std::ofstream out(tokens);
    token::hash_token_file(in, out);
    argv.push_back("--login");
    argv.push_back("tokens:" + tokens);
  }
  for (std::uint32_t i = 0; i < options.gateway_keys; ++i) {
    gateway_keys_.push_back(make_gateway_key(gateway_key_file(i)));
    argv.insert(argv.end(), {"--gateway-key", gateway_key_file(i)});
  }
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  argv.insert(argv.begin(), options.wrapper.begin(), options.wrapper.end());
  supervisor_.emplace(argv, log_path_);

  const auto deadline = std::chrono::steady_clock::now() + 2 * kPatience;
  while (!std::filesystem::exists(ready)) {
    if (supervisor_->wait(Duration(0))) {
      throw std::runtime_error("gateway exited at start:\n" + log());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("gateway not ready in " + std::to_string((2 * kPatience).count()) +
                               " s:\n" + log());
    }
    std::this_thread::sleep_for(Duration(10));
  }
  std::istringstream lines(read_file(ready));
  for (std::string line; std::getline(lines, line);) {
    const auto port_of = [&line] {
      return static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
    };
    if (line.rfind("listen=", 0) == 0) ports_.push_back(port_of());
    if (line.rfind("metrics=", 0) == 0) metrics_port_ = port_of();
  }
  segment_.emplace(GatewaySegment::attach("gatehouse-" + instance_));
}

GatewayProcess::~GatewayProcess() {
  std::vector<pid_t> children;
  for (std::uint32_t f = 0; f < kMaxFrontends; ++f) children.push_back(frontend_pid(f));
  for (std::uint32_t b = 0; b < kMaxBridges; ++b) children.push_back(bridge_pid(b));
  for (std::uint32_t w = 0; w < kMaxWorkers; ++w) children.push_back(worker_pid(w));
  segment_.reset();
  supervisor_.reset();  // SIGKILL + reap if still running; children die with it
  for (const pid_t pid : children) {
    if (pid > 0) ::kill(pid, SIGKILL);
  }
  shm::Segment::remove("gatehouse-" + instance_);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string GatewayProcess::log() const {
  return read_file(log_path_);
}

bool GatewayProcess::wait_log(const std::string& needle, Duration timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (log().find(needle) != std::string::npos) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(Duration(5));
  }
}

bool GatewayProcess::wait_log_count(const std::string& needle, std::size_t n,
                                    Duration timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (log_count(needle) < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(Duration(5));
  }
  return true;
}

std::size_t GatewayProcess::log_count(const std::string& needle) const {
  const std::string text = log();
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::optional<int> GatewayProcess::terminate(Duration timeout) {
  supervisor_->kill(SIGTERM);
  return supervisor_->wait(timeout);
}

pid_t GatewayProcess::worker_pid(std::uint32_t index) const {
  if (!segment_ || index >= segment_->settings().workers) return 0;
  return segment_->control().workers[index].pid.load();
}
pid_t GatewayProcess::frontend_pid() const {
  return frontend_pid(0);
}
pid_t GatewayProcess::frontend_pid(std::uint32_t index) const {
  if (!segment_ || index >= segment_->settings().frontends) return 0;
  return segment_->control().frontends[index].pid.load();
}
pid_t GatewayProcess::bridge_pid() const {
  return bridge_pid(0);
}
pid_t GatewayProcess::bridge_pid(std::uint32_t index) const {
  if (!segment_ || index >= segment_->settings().bridges) return 0;
  return segment_->control().bridges[index].pid.load();
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] == 'Z';
}

}  // namespace gatehouse::testing
