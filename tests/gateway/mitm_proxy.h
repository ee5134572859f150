// MitmProxy: a man in the middle between a client and the gateway, for the
// tests that the modern exchange's version 2 detects one
// (docs/protocol-modern.md). It listens on 127.0.0.1:0 and serves one
// connection at a time on its own thread:
//   kRelay:                forwards bytes both ways unchanged (the control:
//                          a passive relay learns nothing and breaks nothing);
//   kOwnExchanges:         runs its own exchanges, as the gateway with the
//                          client (with a static key of its own) and as a
//                          client with the gateway (pinning the real key), as
//                          an attacker who wants to read and rewrite traffic;
//   kSubstituteEphemeral:  relays the client's key_exchange2_req to the
//                          gateway and puts its own ephemeral key in the
//                          gateway's ack, keeping the rest.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "gatehouse/crypto/modern_crypto.h"

namespace gatehouse::testing {

class MitmProxy {
 public:
  enum class Mode { kRelay, kOwnExchanges, kSubstituteEphemeral };

  MitmProxy(std::uint16_t gateway_port, const modern::PublicKey& gateway_key, Mode mode);
  ~MitmProxy();
  MitmProxy(const MitmProxy&) = delete;
  MitmProxy& operator=(const MitmProxy&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// Key exchanges it completed with the gateway (kOwnExchanges).
  int upstream_exchanges() const noexcept { return upstream_exchanges_.load(); }
  /// Forged acks it sent to clients.
  int forged_acks() const noexcept { return forged_acks_.load(); }

 private:
  void serve();
  void handle(int client_fd);

  const std::uint16_t gateway_port_;
  const modern::PublicKey gateway_key_;
  const Mode mode_;
  const modern::KeyPair own_static_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> upstream_exchanges_{0};
  std::atomic<int> forged_acks_{0};
  std::thread thread_;
};

}  // namespace gatehouse::testing
