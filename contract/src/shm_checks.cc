#include "gatehouse/contract/shm_checks.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

#include "gatehouse/shm/session_table.h"
#include "gatehouse/shm/violation.h"

namespace gatehouse {
namespace {

/// spdlog's levels: trace (0) to off (6); the processes cast log_level to it.
constexpr std::uint32_t kMaxLogLevel = 6;

[[noreturn]] void refuse(const std::string& where, const char* field, std::uint64_t value,
                         const std::string& rule) {
  shm::violation(where + ": " + field + " = " + std::to_string(value) + " (" + rule + ")");
}

bool terminated(const char* text, std::size_t size) noexcept {
  return std::memchr(text, '\0', size) != nullptr;
}

std::string conn_text(std::uint64_t conn) {
  char text[24];
  std::snprintf(text, sizeof text, "%#llx", static_cast<unsigned long long>(conn));
  return text;
}

}  // namespace

void check_settings(const Settings& s, const char* where) {
  const std::string at = std::string("control: ") + where;
  if (s.workers == 0 || s.workers > kMaxWorkers) {
    refuse(at, "workers", s.workers, "1 to " + std::to_string(kMaxWorkers));
  }
  if (s.frontends == 0 || s.frontends > kMaxFrontends) {
    refuse(at, "frontends", s.frontends, "1 to " + std::to_string(kMaxFrontends));
  }
  if (s.max_connections < s.workers * s.frontends) {
    refuse(at, "max_connections", s.max_connections, "at least one slot per worker and frontend");
  }
  if (s.bridges == 0 || s.bridges > kMaxBridges) {
    refuse(at, "bridges", s.bridges, "1 to " + std::to_string(kMaxBridges));
  }
  if (s.frontend_affinity > kAffinityConnection) {
    refuse(at, "frontend_affinity", s.frontend_affinity, "0 address or 1 connection");
  }
  if (s.backend_count > kMaxBackends) {
    refuse(at, "backend_count", s.backend_count, "at most " + std::to_string(kMaxBackends));
  }
  for (std::uint32_t b = 0; b < s.backend_count; ++b) {
    if (!terminated(s.backends[b], kAddressBytes)) {
      refuse(at, "backends[i] unterminated, i", b, "NUL within " + std::to_string(kAddressBytes));
    }
  }
  if (!terminated(s.login_file, kPathBytes)) {
    refuse(at, "login_file unterminated, bytes", kPathBytes, "NUL within them");
  }
  if (s.listener_count > kMaxListeners) {
    refuse(at, "listener_count", s.listener_count, "at most " + std::to_string(kMaxListeners));
  }
  if (s.gateway_key_count > kMaxGatewayKeys) {
    refuse(at, "gateway_key_count", s.gateway_key_count,
           "at most " + std::to_string(kMaxGatewayKeys));
  }
  for (std::uint32_t k = 0; k < s.gateway_key_count; ++k) {
    if (!terminated(s.gateway_keys[k], kPathBytes)) {
      refuse(at, "gateway_keys[i] unterminated, i", k, "NUL within " + std::to_string(kPathBytes));
    }
  }
  if (s.address_limits_exempt_count > kMaxExemptNetworks) {
    refuse(at, "address_limits_exempt_count", s.address_limits_exempt_count,
           "at most " + std::to_string(kMaxExemptNetworks));
  }
  for (std::uint32_t i = 0; i < s.address_limits_exempt_count; ++i) {
    if (s.address_limits_exempt[i].prefix > 128) {
      refuse(at, "address_limits_exempt[i].prefix, i", i, "at most 128");
    }
  }
  bool kcp = false;
  for (std::uint32_t i = 0; i < kMaxListeners; ++i) {
    if (static_cast<std::uint8_t>(s.listener_proxy[i]) >
        static_cast<std::uint8_t>(ProxyMode::kOptional)) {
      refuse(at, "listener_proxy[i], i", i, "0 none, 1 v1, 2 v2 or 3 optional");
    }
    if (s.listener_proxy_from_count[i] > kMaxProxyNetworks) {
      refuse(at, "listener_proxy_from_count[i], i", i,
             "at most " + std::to_string(kMaxProxyNetworks));
    }
    for (std::uint32_t r = 0; r < s.listener_proxy_from_count[i]; ++r) {
      if (s.listener_proxy_from[i][r].prefix > 128) {
        refuse(at, "listener_proxy_from[i][r].prefix, i * 8 + r", i * kMaxProxyNetworks + r,
               "at most 128");
      }
    }
    const std::uint8_t transports = s.listener_transports[i];
    if ((transports & ~(kTransportStreams | kTransportKcp)) != 0 ||
        std::popcount(static_cast<unsigned>(transports & kTransportStreams)) > 1) {
      refuse(at, "listener_transports[i], i", i,
             "Transports bits, at most one of tcp, tls, ws, wss");
    }
    kcp = kcp || (s.listener_transports[i] & kTransportKcp) != 0;
  }
  // The KCP options, where a listener serves KCP (kcp::Options refuses
  // others: the frontend would throw).
  if (kcp && (s.udp_sndwnd < 1 || s.udp_sndwnd > 4096)) {
    refuse(at, "udp_sndwnd", s.udp_sndwnd, "1 to 4096");
  }
  if (kcp && (s.udp_rcvwnd < 1 || s.udp_rcvwnd > 4096)) {
    refuse(at, "udp_rcvwnd", s.udp_rcvwnd, "1 to 4096");
  }
  if (kcp && (s.udp_mtu < 50 || s.udp_mtu > 1500)) refuse(at, "udp_mtu", s.udp_mtu, "50 to 1500");
  if (kcp && (s.kcp_interval_ms < 10 || s.kcp_interval_ms > 5000)) {
    refuse(at, "kcp_interval_ms", s.kcp_interval_ms, "10 to 5000");
  }
  if (s.log_level > kMaxLogLevel) refuse(at, "log_level", s.log_level, "0 (trace) to 6 (off)");
  if (s.login_mode != LoginMode::kAcceptAny && s.login_mode != LoginMode::kStaticTokens &&
      s.login_mode != LoginMode::kSignedTokens && s.login_mode != LoginMode::kAuthService) {
    refuse(at, "login_mode", static_cast<std::uint32_t>(s.login_mode), "0 to 3");
  }
  if (!terminated(s.login_audience, kAddressBytes)) {
    refuse(at, "login_audience unterminated, bytes", kAddressBytes, "NUL within them");
  }
  if (!terminated(s.tls_cert, kPathBytes) || !terminated(s.tls_key, kPathBytes)) {
    refuse(at, "tls_cert or tls_key unterminated, bytes", kPathBytes, "NUL within them");
  }
  if (!terminated(s.ws_origins, kWsOriginsBytes)) {
    refuse(at, "ws_origins unterminated, bytes", kWsOriginsBytes, "NUL within them");
  }
  if (s.duplicate_login != DuplicateLogin::kReplace &&
      s.duplicate_login != DuplicateLogin::kRefuse && s.duplicate_login != DuplicateLogin::kAllow) {
    refuse(at, "duplicate_login", static_cast<std::uint32_t>(s.duplicate_login), "0 to 2");
  }
  if (s.numbering != FrameNumbering::kGonet2 && s.numbering != FrameNumbering::kLaterGeneration) {
    refuse(at, "numbering", static_cast<std::uint32_t>(s.numbering), "0 or 1");
  }
  // The gateway's key in etcd (the bridge's registration).
  if (!terminated(s.register_prefix, kPathBytes) ||
      !terminated(s.register_address, kAddressBytes)) {
    refuse(at, "register_prefix or register_address unterminated, bytes", kPathBytes,
           "NUL within them");
  }
  for (std::uint32_t i = 0; i < kMaxListeners; ++i) {
    if (!terminated(s.listener_addresses[i], kAddressBytes)) {
      refuse(at, "listener_addresses[i] unterminated, i", i,
             "NUL within " + std::to_string(kAddressBytes));
    }
  }
}

void check_journal(const Journal& j, std::uint32_t worker) {
  const std::string at = "journal/" + std::to_string(worker);
  const std::uint32_t state = j.state.load(std::memory_order_acquire);
  if (state != Journal::kIdle && state != Journal::kCommitting) {
    refuse(at, "state", state, "0 idle or 1 committing");
  }
  const std::uint32_t count = j.count.load(std::memory_order_acquire);
  if (count > kJournalEntries) {
    refuse(at, "count", count, "at most " + std::to_string(kJournalEntries));
  }
}

void check_session(const Session& s, std::uint64_t conn, const Settings& settings) {
  const auto at = [conn] { return "sessions: conn " + conn_text(conn); };
  if (s.state > Session::kAuthPending) refuse(at(), "state", s.state, "0 to 5");
  if (s.crypto > Session::kModern) refuse(at(), "crypto", s.crypto, "0 clear, 1 legacy, 2 modern");
  if (settings.listener_count != 0 && s.listener >= settings.listener_count && s.state != 0) {
    refuse(at(), "listener", s.listener, "below listener_count");
  }
  if (s.opened_unix_ms < 0 || s.opened_unix_ms > kMaxUnixMs) {
    refuse(at(), "opened_unix_ms", static_cast<std::uint64_t>(s.opened_unix_ms), "0 to 2^62 ns");
  }
  // The rate buckets add up to a few minutes to these (base/rate_limit.h).
  if (s.frames_tat_ns > kMaxUnixNs) {
    refuse(at(), "frames_tat_ns", static_cast<std::uint64_t>(s.frames_tat_ns), "at most 2^62");
  }
  if (s.bytes_tat_ns > kMaxUnixNs) {
    refuse(at(), "bytes_tat_ns", static_cast<std::uint64_t>(s.bytes_tat_ns), "at most 2^62");
  }
}

void check_session_cipher(const Session& s, std::uint64_t conn) {
  const auto at = [conn] { return "sessions: conn " + conn_text(conn); };
  if (s.crypto == Session::kModern) {
    for (const modern::AeadStream* stream : {&s.cipher.modern.open, &s.cipher.modern.seal}) {
      if (stream->aead != modern::Aead::kChaCha20Poly1305 &&
          stream->aead != modern::Aead::kAes256Gcm) {
        refuse(at(), "cipher.modern aead", static_cast<std::uint8_t>(stream->aead), "0 or 1");
      }
    }
  }
  // A legacy session's RC4 states need no check: packed as bytes, any
  // content widens into a table OpenSSL indexes safely (legacy_crypto.h).
}

std::optional<std::uint32_t> worker_of(std::uint64_t conn, const Settings& settings) noexcept {
  const std::uint32_t slot = shm::ConnectionId(conn).slot();
  if (slot >= settings.max_connections) return std::nullopt;
  return worker_of_slot(slot, settings);
}

}  // namespace gatehouse
