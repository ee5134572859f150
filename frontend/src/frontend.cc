#include "gatehouse/frontend/frontend.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/v6_only.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/kcp/connection.h"
#include "gatehouse/net/edge_socket.h"
#include "gatehouse/net/proxy_protocol.h"
#include "gatehouse/net/tls_context.h"
#include "gatehouse/shm/idle_strategy.h"

namespace gatehouse::frontend {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

constexpr std::size_t kScratchBytes = std::size_t{64} * 1024;
constexpr std::size_t kRingBatch = 256;  // records per ring poll
constexpr std::size_t kMaxIov = 64;
constexpr std::size_t kWideReadBytes = 4096;  // a busy connection's receive buffer
// Input a kicked connection may still send (heartbeats in flight) before it
// is cut off rather than waited for.
constexpr std::size_t kMaxDiscard = std::size_t{64} * 1024;

// A PROXY header's deadline: the read-timeout, at most this. A load
// balancer sends the header at once; a connection that holds back its first
// bytes holds a descriptor, and is cut off early.
constexpr std::uint32_t kProxyHeaderTimeoutMs = 5000;
// What one read of a connection waiting for its header takes.
constexpr std::size_t kProxyReadBytes = 256;

std::int64_t now_ms() {
  return monotonic_ns() / 1'000'000;
}

// How long one pass may run socket handlers before the rest of the duty
// cycle (the rings, the heartbeat) gets its turn; far below hang-timeout
// (0.5 s at least).
constexpr auto kHandlerBudget = std::chrono::milliseconds(50);

// KCP over UDP.
constexpr std::size_t kDatagramBatch = 64;  // datagrams read before the rest of the pass
// The largest datagram kcp-go sends; a receive buffer one byte larger tells
// a longer (truncated) one apart.
constexpr std::size_t kDatagramBytes = kcp::kMaxDatagramBytes + 1;

kcp::Millis kcp_clock(std::int64_t ms) {
  return static_cast<kcp::Millis>(ms);  // KCP's clock wraps at 2^32
}

/// IPv4 addresses IPv4-mapped, as the session table and AddressRange keep them.
asio::ip::address_v6::bytes_type v6_bytes_of(const asio::ip::address& address) {
  return (address.is_v6() ? address.to_v6()
                          : asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()))
      .to_bytes();
}

/// The inverse, for a PROXY header's address: an IPv4-mapped one as IPv4.
asio::ip::address address_of(const std::array<std::uint8_t, 16>& v6) {
  asio::ip::address_v6::bytes_type bytes;
  std::memcpy(bytes.data(), v6.data(), bytes.size());
  const asio::ip::address_v6 a(bytes);
  if (a.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a);
  return a;
}

}  // namespace

/// In place of a TCP socket: a KCP conversation with one client address and
/// port, on one listener's UDP socket.
struct Frontend::KcpLink {
  KcpLink(std::uint32_t conv, const kcp::Options& options, kcp::Connection::Output output,
          const UdpPeer& from)
      : session(conv, options, std::move(output)), peer(from) {}

  kcp::Connection session;
  UdpPeer peer;             // its key in kcp_sessions_
  bool listed = true;       // in kcp_sessions_ (and counted in kcp_per_address_)
  bool pending = true;      // not logged in: counted in kcp_pending_
  bool dirty = false;       // in kcp_dirty_: sent to, to flush after the batch
  bool scheduled = false;   // `due` is in kcp_timers_
  std::int64_t due = 0;     // the next update()
  std::size_t unacked = 0;  // unacknowledged_bytes() when last looked at (write-timeout)
};

struct Frontend::UdpListener {
  UdpListener(asio::io_context& io, std::uint16_t index) : socket(io), listener(index) {}
  udp::socket socket;
  std::uint16_t listener;  // its --listen
};

std::size_t Frontend::UdpPeerHash::operator()(const UdpPeer& p) const noexcept {
  // Keyed by a random seed, so that addresses chosen to collide (UDP source
  // addresses are easily forged) do not line up in one bucket.
  std::uint64_t h = seed;
  const auto mix = [&h](std::uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  };
  std::uint64_t half[2];
  std::memcpy(half, p.address.data(), sizeof half);
  mix(half[0]);
  mix(half[1]);
  mix((std::uint64_t{p.port} << 16) | p.listener);
  return static_cast<std::size_t>(h);
}

struct Frontend::Connection {
  Connection(asio::io_context& io, shm::ConnectionId conn_id, std::uint32_t w)
      : socket(io), id(conn_id), worker(w) {}

  net::EdgeSocket socket;
  shm::ConnectionId id;
  std::uint32_t worker;
  std::uint32_t frames_in = 0;
  bool reading = false;        // an async_receive is pending
  bool writing = false;        // an async_wait(write) is pending
  bool blocked = false;        // in blocked_, waiting for ring space
  bool socket_closed = false;  // the socket is closed (or never to be read again)
  bool worker_closed = false;  // the worker's kClose has arrived
  // The kClose's reason: a WebSocket client reads it in the close frame.
  CloseReason close_reason = CloseReason::kClientClosed;
  bool lingering = false;     // output flushed, SHUT_WR sent, waiting for FIN
  std::vector<std::byte> in;  // a partial frame carried to the next read
  // What the pending receive reads into: small, so an idle connection costs
  // little; a read that fills it continues into the shared scratch buffer,
  // and the connection reads into `wide` until its reads are small again.
  std::array<std::byte, 128> read_ahead;
  std::unique_ptr<std::array<std::byte, kWideReadBytes>> wide;
  std::vector<std::byte> out;  // output the socket did not take yet
  std::size_t out_offset = 0;
  std::uint32_t out_records = 0;       // worker records waiting in `out`
  DeadlineLink<Connection> read_link;  // reading_ or lingering_
  DeadlineLink<Connection> write_link;
  DeadlineLink<Connection> login_link;
  bool logged_in = false;          // the worker's kLoggedIn arrived
  std::size_t prelogin_bytes = 0;  // frame bytes received before login
  std::uint32_t discarded = 0;     // bytes read after the kick, thrown away
  // Current ring batch: index of the first/last of this connection's sends.
  std::size_t batch_first = SIZE_MAX;
  std::size_t batch_last = SIZE_MAX;
  bool dead = false;             // destroyed; freed by reap() at a safe point
  bool address_counted = false;  // in per_address_ (not an adopted orphan)
  AddressLimit::Key address{};
  std::unique_ptr<KcpLink> kcp;  // a KCP session (the socket is not used), else TCP
  // TLS or WebSocket (the socket is the link's): its open completed.
  std::shared_ptr<StreamLink> link;
  bool link_ready = false;
};

struct Frontend::Pending {
  Pending(tcp::socket s, std::uint64_t k, std::size_t l, const tcp::endpoint& p, ProxyMode m,
          bool t)
      : socket(std::move(s)), key(k), listener(l), peer(p), mode(m), trusted(t) {}

  tcp::socket socket;
  std::uint64_t key;  // in pending_
  std::size_t listener;
  tcp::endpoint peer;
  ProxyMode mode;  // the listener's as of accept
  bool trusted;    // the peer is in the listener's proxy-from
  std::array<std::byte, kProxyReadBytes> chunk;
  std::vector<std::byte> in;  // read so far: the header, and what came with it
  DeadlineLink<Pending> link;
};

struct Frontend::WorkerLink {
  WorkerLink(GatewaySegment& segment, std::uint32_t w, std::uint32_t frontend, shm::Doorbell bell,
             const Settings& settings)
      : doorbell(std::move(bell)),
        to_worker(segment.ring(RingKind::kFrontendToWorker, w, frontend), &doorbell),
        from_worker(segment.ring(RingKind::kWorkerToFrontend, w, frontend)),
        records(w, settings, frontend) {}

  shm::Doorbell doorbell;  // the worker's: rung when it is parked
  shm::RingProducer to_worker;
  shm::RingConsumer from_worker;
  const ipc::RecordReader<RingKind::kWorkerToFrontend> records;
  // Control records (open/closed) that found the ring full: sent first, in
  // order, before any more frames go to this worker.
  std::deque<std::vector<std::byte>> control_backlog;
  std::deque<std::uint32_t> control_types;
};

Frontend::Frontend(GatewaySegment& segment, std::uint32_t index, const std::vector<int>& listen_fds,
                   shm::Doorbell doorbell, std::vector<shm::Doorbell> worker_doorbells,
                   const std::vector<int>& udp_fds)
    : segment_(segment),
      settings_(segment.settings()),
      settings_generation_(segment.settings_generation()),
      index_(index < settings_.frontends
                 ? index
                 : throw std::invalid_argument("frontend: index " + std::to_string(index) + " of " +
                                               std::to_string(settings_.frontends))),
      metrics_(segment.metrics().frontends[index]),
      table_(segment.session_slots()),
      doorbell_(std::move(doorbell)),
      doorbell_wait_(io_, ::dup(doorbell_.fd())),
      sweep_timer_(io_),
      per_address_(settings_.max_connections_per_ip),
      connect_rate_(settings_.connect_rate, settings_.connect_rate_per_ip,
                    &segment.control().connect_tat_ns),
      by_slot_(table_.slots()),
      scratch_(kScratchBytes),
      reading_(&Connection::read_link),
      lingering_(&Connection::read_link),
      writing_(&Connection::write_link),
      logging_in_(&Connection::login_link),
      proxy_waiting_(&Pending::link),
      kcp_sessions_(0, UdpPeerHash{std::random_device{}()}),
      kcp_per_address_(settings_.udp_sessions_per_ip),
      kcp_tick_(io_),
      datagram_(kDatagramBytes) {
  if (worker_doorbells.size() != settings_.workers) {
    throw std::invalid_argument("frontend: expected " + std::to_string(settings_.workers) +
                                " worker doorbells, got " +
                                std::to_string(worker_doorbells.size()));
  }
  for (std::uint32_t w = 0; w < settings_.workers; ++w) {
    workers_.push_back(std::make_unique<WorkerLink>(segment, w, index_,
                                                    std::move(worker_doorbells[w]), settings_));
  }
  // One range of slots per worker and frontend; this frontend allocates
  // from its own ranges only (partition_of()).
  table_.set_partitions(partitions_of(settings_));
  for (std::uint32_t slot = 0; slot < table_.slots(); ++slot) {
    if (frontend_of_slot(slot, settings_) == index_) ++capacity_;
  }
  // Which --listen each socket serves: the listeners with that transport, in
  // order (a listener with none named is TCP, as before transports).
  const auto serves = [&](std::size_t l, std::uint8_t transport) {
    if (l >= settings_.listener_count) return true;  // more sockets than listeners: in order
    const std::uint8_t t = settings_.listener_transports[l];
    return t == 0 ? (transport & kTransportTcp) != 0 : (t & transport) != 0;
  };
  const auto next_listener = [&](std::size_t l, std::uint8_t transport) {
    while (!serves(l, transport)) ++l;
    return l;
  };
  std::size_t listener = 0;
  for (const int fd : listen_fds) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    auto acceptor = std::make_unique<tcp::acceptor>(io_);
    acceptor->assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd);
    acceptors_.push_back(std::move(acceptor));
    listener = next_listener(listener, kTransportStreams);
    acceptor_listener_.push_back(static_cast<std::uint16_t>(listener++));
  }
  listener = 0;
  for (const int fd : udp_fds) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    listener = next_listener(listener, kTransportKcp);
    auto u = std::make_unique<UdpListener>(io_, static_cast<std::uint16_t>(listener++));
    u->socket.assign(addr.ss_family == AF_INET6 ? udp::v6() : udp::v4(), fd);
    u->socket.non_blocking(true);
    udp_.push_back(std::move(u));
  }
  const std::uint8_t* transports = settings_.listener_transports;
  if (std::any_of(transports, transports + settings_.listener_count,
                  [](std::uint8_t t) { return (t & (kTransportTls | kTransportWss)) != 0; }) &&
      !load_tls()) {
    throw std::runtime_error("frontend: tls-cert and tls-key do not load");
  }
  segment_.control().frontends[index_].pid.store(::getpid());
}

Frontend::~Frontend() = default;

void Frontend::request_drain() noexcept {
  drain_requested_ = 1;
}

// ------------------------------------------------------------------ accept

void Frontend::start_accept(std::size_t acceptor) {
  // Over --connect-rate: accept again once the bucket has a token; until
  // then new connections wait in the kernel's listen queue.
  if (const std::int64_t wait_ms = connect_rate_.total_wait_ms(now_ms()); wait_ms > 0) {
    metrics_.add(metrics::kAcceptsPaced);
    accept_paced_log_.log("accepting paused for {} ms: over connect-rate ({} a second)", wait_ms,
                          settings_.connect_rate);
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(wait_ms));
    timer->async_wait([this, acceptor, timer](boost::system::error_code wait_ec) {
      if (!wait_ec && acceptors_[acceptor]->is_open()) start_accept_now(acceptor);
    });
    return;
  }
  start_accept_now(acceptor);
}

void Frontend::start_accept_now(std::size_t acceptor) {
  acceptors_[acceptor]->async_accept(
      [this, acceptor](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptors_[acceptor]->is_open()) return;
        if (!ec) {
          on_accept(acceptor, std::move(socket));
        } else if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
                   ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
          // Out of fds (or kernel memory): the pending connection stays in the
          // backlog and the acceptor stays readable, so retrying at once would
          // spin. Wait, and say so at most once a second.
          metrics_.add(metrics::kConnectionsRefused);
          out_of_fds_log_.log(
              "accept failed: {} with {} connections open (raise LimitNOFILE / "
              "ulimit -n, or lower --max-connections); pausing accepts for 100 ms",
              ec.message(), connection_count_);
          auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
          timer->async_wait([this, acceptor, timer](boost::system::error_code wait_ec) {
            if (!wait_ec && acceptors_[acceptor]->is_open()) start_accept(acceptor);
          });
          return;
        } else {
          accept_failed_log_.log("accept failed: {}", ec.message());
        }
        start_accept(acceptor);
      });
}

/// `acceptor`: its index in acceptors_; from here on, `listener` is the
/// --listen it serves (a kcp-only listener has no acceptor).
void Frontend::on_accept(std::size_t acceptor, tcp::socket socket) {
  boost::system::error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone
  const std::size_t listener = acceptor_listener_[acceptor];
  if (listener < kMaxListeners && settings_.listener_proxy[listener] != ProxyMode::kNone) {
    expect_proxy_header(listener, std::move(socket), remote);
    return;
  }
  open_connection(listener, std::move(socket), remote, {});
}

/// Tells the connection's worker it opened (kConnOpened: the client's
/// address, IPv4-mapped, its port and listener) and starts its read and
/// login deadlines; returns the time they count from.
std::int64_t Frontend::announce(Connection& c, const std::uint8_t* v6, std::uint16_t port,
                                std::uint16_t listener) {
  ipc::ConnOpened opened{};
  opened.conn = c.id.value();
  std::memcpy(opened.address, v6, sizeof opened.address);
  opened.port = port;
  opened.listener = listener;
  opened.accepted_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  send_control(c.worker, ipc::kConnOpened, &opened, sizeof opened);
  const std::int64_t now = now_ms();
  reading_.push_back(c, now + settings_.read_timeout_ms);
  logging_in_.push_back(c, now + settings_.login_timeout_ms);
  return now;
}

/// A slot for a new connection (TCP or KCP), nullopt at max-connections or
/// with the table full. Workers take new connections in turn; a worker whose
/// range of the session table is full passes its turn to the next.
std::optional<shm::ConnectionId> Frontend::allocate_slot() {
  std::optional<shm::ConnectionId> id;
  for (std::uint32_t tries = 0; !id && tries < settings_.workers && connection_count_ < capacity_;
       ++tries) {
    id = table_.allocate(partition_of(next_worker_, index_, settings_));
    next_worker_ = (next_worker_ + 1) % settings_.workers;
  }
  return id;
}

void Frontend::open_connection(std::size_t listener, tcp::socket socket,
                               const tcp::endpoint& remote,
                               std::span<const std::byte> first_bytes) {
  boost::system::error_code ec;
  const AddressLimit::Key address = AddressLimit::key_of(remote.address());
  const auto v6_bytes = v6_bytes_of(remote.address());
  const bool limit_address = !exempt_from_address_limits(v6_bytes.data());
  if (const auto verdict = connect_rate_.admit(address, limit_address, now_ms());
      verdict != ConnectRate::Verdict::kAccept) {
    refuse_for_rate(socket, remote, verdict == ConnectRate::Verdict::kOverTotal);
    return;
  }
  if (!per_address_.try_add(address, limit_address)) {
    metrics_.add(metrics::kConnectionsRefusedPerAddress);
    per_address_log_.log(
        "connection from {} refused: {} connections from that address already "
        "(--max-connections-per-ip)",
        remote.address().to_string(), per_address_.limit());
    return;  // the socket closes here
  }
  const std::optional<shm::ConnectionId> id = allocate_slot();
  if (!id) {
    per_address_.remove(address);
    metrics_.add(metrics::kConnectionsRefused);
    connection_limit_log_.log("connection from {} refused: connection limit {} reached",
                              remote.address().to_string(), capacity_);
    return;  // the socket closes here
  }
  socket.non_blocking(true, ec);
  socket.set_option(tcp::no_delay(true), ec);
  if (settings_.sockbuf != 0) {
    socket.set_option(asio::socket_base::receive_buffer_size(static_cast<int>(settings_.sockbuf)),
                      ec);
    socket.set_option(asio::socket_base::send_buffer_size(static_cast<int>(settings_.sockbuf)), ec);
  }
  metrics_.add(metrics::kConnectionsAccepted);
  const std::uint32_t worker = worker_of_slot(id->slot(), settings_);
  auto conn = std::make_unique<Connection>(io_, *id, worker);
  conn->address = address;
  conn->address_counted = true;
  Connection& c = *conn;
  by_slot_[id->slot()] = std::move(conn);
  ++connection_count_;

  announce(c, v6_bytes.data(), remote.port(), static_cast<std::uint16_t>(listener));
  const std::uint8_t transports =
      listener < settings_.listener_count ? settings_.listener_transports[listener] : 0;
  if ((transports & (kTransportTls | kTransportWs | kTransportWss)) != 0) {
    const StreamLink::Kind kind = (transports & kTransportTls) != 0  ? StreamLink::Kind::kTls
                                  : (transports & kTransportWs) != 0 ? StreamLink::Kind::kWs
                                                                     : StreamLink::Kind::kWss;
    open_link(c, kind, std::move(socket), first_bytes);
    return;
  }
  c.socket = std::move(socket);
  // The bytes that came with a PROXY header go first (unless they closed
  // the connection or wait for ring space: then retry_blocked reads on).
  if (first_bytes.empty() || take_input(c, first_bytes)) start_read(c);
}

bool Frontend::exempt_from_address_limits(const std::uint8_t* v6) const noexcept {
  const std::uint32_t n = std::min(settings_.address_limits_exempt_count, kMaxExemptNetworks);
  return std::any_of(settings_.address_limits_exempt, settings_.address_limits_exempt + n,
                     [v6](const AddressRange& range) { return range.contains(v6); });
}

/// Refused over --connect-rate-per-ip (or --connect-rate, when listeners
/// raced for its last token): counted, and said at most once a second (with
/// how many were not said). Closed with a reset, so that a flood leaves no
/// TIME_WAIT behind.
void Frontend::refuse_for_rate(tcp::socket& socket, const tcp::endpoint& remote, bool total) {
  metrics_.add(total ? metrics::kConnectionsRefusedRate
                     : metrics::kConnectionsRefusedRatePerAddress);
  boost::system::error_code ec;
  socket.set_option(asio::socket_base::linger(true, 0), ec);
  connect_rate_log_.log("connection from {} refused: over {} ({} a second)",
                        remote.address().to_string(),
                        total ? "connect-rate" : "connect-rate-per-ip",
                        total ? settings_.connect_rate : settings_.connect_rate_per_ip);
}

// ------------------------------------------------------------------ PROXY protocol

/// A connection of a proxy= listener: it gets no slot until its header is in
/// (or, proxy=optional, its first bytes say there is none). A source outside
/// the listener's proxy-from can never bring a header that counts, so where
/// one is required it is refused at once.
void Frontend::expect_proxy_header(std::size_t listener, tcp::socket socket,
                                   const tcp::endpoint& peer) {
  const auto v6 = v6_bytes_of(peer.address());
  const ProxyMode mode = settings_.listener_proxy[listener];
  const bool trusted = trusted_proxy(listener, v6.data());
  if (connection_count_ + pending_.size() >= capacity_) {
    metrics_.add(metrics::kConnectionsRefused);
    connection_limit_log_.log("connection from {} refused: connection limit {} reached",
                              peer.address().to_string(), capacity_);
    return;  // the socket closes here
  }
  const std::uint64_t key = next_pending_++;
  auto pending = std::make_unique<Pending>(std::move(socket), key, listener, peer, mode, trusted);
  Pending& p = *pending;
  pending_.emplace(key, std::move(pending));
  if (!trusted && mode != ProxyMode::kOptional) {
    refuse_proxy(p, metrics::kProxyRefusedUntrusted, "not from the listener's proxy-from");
    return;
  }
  proxy_waiting_.push_back(p,
                           now_ms() + std::min(settings_.read_timeout_ms, kProxyHeaderTimeoutMs));
  start_proxy_read(p);
}

bool Frontend::trusted_proxy(std::size_t listener, const std::uint8_t* v6) const noexcept {
  const std::uint32_t n =
      std::min(settings_.listener_proxy_from_count[listener], kMaxProxyNetworks);
  const AddressRange* ranges = settings_.listener_proxy_from[listener];
  return std::any_of(ranges, ranges + n, [v6](const AddressRange& r) { return r.contains(v6); });
}

/// The handler looks the connection up by key: a refusal or a drain may
/// have dropped it by the time the read completes.
void Frontend::start_proxy_read(Pending& p) {
  p.socket.async_receive(asio::buffer(p.chunk),
                         [this, key = p.key](boost::system::error_code ec, std::size_t n) {
                           const auto it = pending_.find(key);
                           if (it == pending_.end() || ec == asio::error::operation_aborted) return;
                           on_proxy_bytes(*it->second, ec, n);
                         });
}

void Frontend::on_proxy_bytes(Pending& p, boost::system::error_code ec, std::size_t n) {
  if (ec || n == 0) {
    // Gone before its header: a load balancer's health check connects and
    // closes. Nothing to count.
    spdlog::debug("connection from {} closed before its PROXY header: {}",
                  p.peer.address().to_string(), ec ? ec.message() : "end of stream");
    drop_pending(p);
    return;
  }
  metrics_.add(metrics::kClientBytesReceived, n);
  p.in.insert(p.in.end(), p.chunk.begin(), p.chunk.begin() + static_cast<std::ptrdiff_t>(n));
  // Bounded: the parser decides within 107 bytes for v1, and within the
  // length a v2 header gives itself (64 KiB at most).
  const net::proxy::Result r = net::proxy::parse(p.in);
  switch (r.status) {
    case net::proxy::Status::kNeedMore:
      start_proxy_read(p);
      return;
    case net::proxy::Status::kNotProxy:
      if (p.mode != ProxyMode::kOptional) {
        refuse_proxy(p, metrics::kProxyRefusedMissing, "no PROXY header");
        return;
      }
      break;  // a client of its own: the peer is the client
    case net::proxy::Status::kError:
      if (!p.trusted) {
        refuse_proxy(p, metrics::kProxyRefusedUntrusted, "a PROXY header from outside proxy-from");
      } else {
        refuse_proxy(p, metrics::kProxyRefusedMalformed,
                     std::string("a malformed PROXY header: ") +
                         std::string(net::proxy::to_string(r.error)));
      }
      return;
    case net::proxy::Status::kHeader:
      if (!p.trusted) {
        refuse_proxy(p, metrics::kProxyRefusedUntrusted, "a PROXY header from outside proxy-from");
        return;
      }
      if ((p.mode == ProxyMode::kV1 && r.header.version != 1) ||
          (p.mode == ProxyMode::kV2 && r.header.version != 2)) {
        refuse_proxy(p, metrics::kProxyRefusedMissing,
                     r.header.version == 1 ? "a PROXY v1 header where v2 is required"
                                           : "a PROXY v2 header where v1 is required");
        return;
      }
      break;
  }
  tcp::endpoint client = p.peer;
  std::size_t header_bytes = 0;
  if (r.status == net::proxy::Status::kHeader) {
    metrics_.add(r.header.version == 1 ? metrics::kProxyHeadersV1 : metrics::kProxyHeadersV2);
    header_bytes = r.header.bytes;
    // LOCAL, UNKNOWN and non-IP families name no client: the peer stands.
    if (r.header.has_address) {
      client = tcp::endpoint(address_of(r.header.source), r.header.source_port);
    }
    spdlog::debug("connection from {}: PROXY v{} header, client {}", p.peer.address().to_string(),
                  r.header.version, client.address().to_string());
  }
  const std::size_t listener = p.listener;
  tcp::socket socket = std::move(p.socket);
  std::vector<std::byte> in = std::move(p.in);
  drop_pending(p);
  open_connection(listener, std::move(socket), client, std::span(in).subspan(header_bytes));
}

/// Closed, counted by reason and said (at most once a second).
void Frontend::refuse_proxy(Pending& p, metrics::Counter reason, std::string_view why) {
  metrics_.add(reason);
  LogLimit& log = reason == metrics::kProxyRefusedUntrusted   ? proxy_untrusted_log_
                  : reason == metrics::kProxyRefusedMissing   ? proxy_missing_log_
                  : reason == metrics::kProxyRefusedMalformed ? proxy_malformed_log_
                                                              : proxy_timeout_log_;
  log.log("connection from {} to listener {} closed: {} (proxy={})", p.peer.address().to_string(),
          p.listener, why, proxy_mode_text(p.mode));
  drop_pending(p);
}

/// Closes its socket (if it still has it) and forgets it.
void Frontend::drop_pending(Pending& p) {
  proxy_waiting_.remove(p);
  pending_.erase(p.key);  // p is gone from here on
}

// ------------------------------------------------------------------ client -> worker

/// A receive into the connection's small read-ahead buffer. Unlike a
/// readiness wait (async_wait), which makes Asio re-arm the socket with an
/// epoll_ctl every time, a receive is queued on the edge-triggered
/// registration as it is, and after a short read it does not try a recv()
/// that can only fail (net::EdgeSocket): one syscall per read.
void Frontend::start_read(Connection& c) {
  if (c.kcp) {
    pump_kcp(c);  // what the session holds already (after a full ring, say)
    return;
  }
  if (c.link) {
    // A kicked link is not read: its close (start_linger) reads the end.
    if (c.reading || !c.link_ready || c.socket_closed || c.blocked || c.worker_closed) return;
    c.reading = true;
    c.link->read([this, id = c.id](StreamLink::Input input, std::span<const std::byte> bytes) {
      Connection* conn = find(id);
      if (conn == nullptr) return;
      conn->reading = false;
      on_link_input(*conn, input, bytes);
    });
    return;
  }
  // A kicked connection is read again only to see its FIN, once its output
  // is flushed (lingering).
  if (c.reading || c.socket_closed || c.blocked || (c.worker_closed && !c.lingering)) return;
  c.reading = true;
  const auto buffer = c.wide ? asio::buffer(*c.wide) : asio::buffer(c.read_ahead);
  c.socket.async_receive_edge(buffer,
                              [this, id = c.id](boost::system::error_code ec, std::size_t n) {
                                Connection* conn = find(id);
                                if (conn == nullptr) return;
                                conn->reading = false;
                                if (ec == asio::error::operation_aborted) return;
                                on_readable(*conn, ec, n);
                              });
}

void Frontend::on_readable(Connection& c, boost::system::error_code ec, std::size_t n) {
  if (c.socket_closed) return;
  std::byte* const received = c.wide ? c.wide->data() : c.read_ahead.data();
  const std::size_t capacity = c.wide ? c.wide->size() : c.read_ahead.size();
  std::span<const std::byte> bytes(received, ec ? 0 : n);
  // A read that fills its buffer may not have drained the socket, and makes
  // Asio try the next receive at once (an EAGAIN when it has): a busy
  // connection reads into a page of its own, an idle one gives it back.
  std::unique_ptr<std::array<std::byte, kWideReadBytes>> spare;
  if (!ec && n == capacity && !c.wide) {
    c.wide = std::make_unique<std::array<std::byte, kWideReadBytes>>();
  } else if (!ec && n < c.read_ahead.size() && c.wide) {
    spare = std::move(c.wide);  // freed after `bytes` is used
  }
  if (!ec && n == capacity) {
    // The buffer filled up: take the rest from the socket in one go.
    std::memcpy(scratch_.data(), received, n);
    const std::size_t more =
        c.socket.read_some(asio::buffer(scratch_.data() + n, scratch_.size() - n), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
    bytes = {scratch_.data(), n + (ec ? 0 : more)};
  }
  metrics_.add(metrics::kClientBytesReceived, bytes.size());
  if (c.worker_closed) {
    // Kicked: its input goes nowhere. The FIN (or a reset) ends the linger;
    // a client that keeps sending instead is cut off, not read for the
    // whole linger.
    c.discarded += static_cast<std::uint32_t>(std::min<std::size_t>(bytes.size(), kMaxDiscard));
    if (ec || c.discarded >= kMaxDiscard) {
      destroy(c);
    } else {
      start_read(c);
    }
    return;
  }
  // closed, or blocked on a full ring (retry_blocked reads on)
  if (!bytes.empty() && !take_input(c, bytes)) return;
  if (ec) {  // after the bytes that came with it: a FIN follows the last frame
    const bool clean = ec == asio::error::eof || ec == asio::error::connection_reset;
    close_from_frontend(c, clean ? CloseReason::kClientClosed : CloseReason::kIoError);
    return;
  }
  start_read(c);
}

/// Completes the partial frame carried in c.in with the bytes it lacks
/// (copying only those: a frame trickled in a byte at a time costs its own
/// size, not its size squared), forwards it, then forwards the frames in the
/// rest of `bytes`. False as forward_frames().
bool Frontend::take_input(Connection& c, std::span<const std::byte> bytes) {
  while (!c.in.empty() && !bytes.empty()) {
    const std::size_t have = c.in.size();
    const std::size_t whole =
        protocol::kSizeBytes +
        (have < protocol::kSizeBytes ? 0 : protocol::scan_frame(c.in, SIZE_MAX).payload_bytes);
    const std::size_t take = std::min(whole - have, bytes.size());
    c.in.insert(c.in.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    if (c.in.size() < protocol::kSizeBytes) continue;  // `bytes` is used up
    const protocol::FrameScan scan = protocol::scan_frame(c.in, settings_.max_frame);
    if (scan.kind == protocol::FrameScan::kNeedMore) {
      c.in.reserve(protocol::kSizeBytes + scan.payload_bytes);  // no regrowth while it trickles
      continue;
    }
    std::vector<std::byte> frame;  // whole (or too large: forward_frames closes)
    frame.swap(c.in);
    if (!forward_frames(c, frame)) {
      // Blocked: c.in holds the frame again; what followed it waits behind it.
      if (c.blocked) c.in.insert(c.in.end(), bytes.begin(), bytes.end());
      return false;
    }
  }
  if (bytes.empty()) return true;  // (forward_frames would drop a partial frame in c.in)
  return forward_frames(c, bytes);
}

/// Sends every whole frame in `bytes` to the worker and keeps the rest in
/// c.in. False when the connection must not be read now (closed, or blocked
/// on a full ring).
bool Frontend::forward_frames(Connection& c, std::span<const std::byte> bytes) {
  WorkerLink& link = *workers_[c.worker];
  bool forwarded = false;
  // The read deadline restarts with each whole frame, as gonet2's did (it
  // set the deadline, then read a frame): trickled bytes do not refresh it.
  const auto restart_deadline = [&] {
    if (forwarded) touch(c);
  };
  while (!bytes.empty()) {
    const protocol::FrameScan scan = protocol::scan_frame(bytes, settings_.max_frame);
    if (scan.kind == protocol::FrameScan::kTooLarge) {
      spdlog::debug("conn {:#x}: frame of {} bytes over the {} limit", c.id.value(),
                    scan.payload_bytes, settings_.max_frame);
      close_from_frontend(c, CloseReason::kFrameTooLarge);
      return false;
    }
    if (!c.logged_in && bytes.size() >= protocol::kSizeBytes &&
        !within_prelogin_budget(c, protocol::kSizeBytes + scan.payload_bytes)) {
      return false;
    }
    if (scan.kind == protocol::FrameScan::kNeedMore) break;
    const auto payload = bytes.subspan(protocol::kSizeBytes, scan.payload_bytes);
    const ipc::ClientFrame header{c.id.value(), c.frames_in + 1, 0};
    if (!link.control_backlog.empty() ||
        ipc::write_record(link.to_worker, ipc::kClientFrame, header, payload) !=
            shm::WriteStatus::kOk) {
      c.in.assign(bytes.begin(), bytes.end());
      c.blocked = true;
      blocked_.push_back(c.id);
      restart_deadline();
      return false;
    }
    ++c.frames_in;
    if (!c.logged_in) c.prelogin_bytes += protocol::kSizeBytes + scan.payload_bytes;
    metrics_.add(metrics::kClientFramesReceived);
    forwarded = true;
    bytes = bytes.subspan(protocol::kSizeBytes + scan.payload_bytes);
  }
  c.in.assign(bytes.begin(), bytes.end());
  restart_deadline();
  return true;
}

/// Whether a connection that has not logged in may send a frame of
/// `frame_bytes` (checked as soon as its header is in): else it is closed
/// prelogin_exceeded. Before login a client has only its key exchange and
/// its login to send (shared/protocol.md, docs/protocol-modern.md).
bool Frontend::within_prelogin_budget(Connection& c, std::size_t frame_bytes) {
  if (c.frames_in < settings_.prelogin_frames &&
      c.prelogin_bytes + frame_bytes <= settings_.prelogin_bytes) {
    return true;
  }
  prelogin_log_.log(
      "conn {:#x}: over the pre-login budget ({} frames, {} bytes) without logging in",
      c.id.value(), settings_.prelogin_frames, settings_.prelogin_bytes);
  close_from_frontend(c, CloseReason::kPreloginExceeded);
  return false;
}

void Frontend::retry_blocked() {
  for (std::size_t n = blocked_.size(); n > 0; --n) {
    const shm::ConnectionId id = blocked_.front();
    blocked_.pop_front();
    Connection* c = find(id);
    if (c == nullptr || !c->blocked) continue;
    c->blocked = false;
    if (c->socket_closed || c->worker_closed) continue;
    std::vector<std::byte> pending;
    pending.swap(c->in);
    if (forward_frames(*c, pending)) start_read(*c);
    if (c->blocked) break;  // still full: keep the order, try again next pass
  }
}

// ------------------------------------------------------------------ worker -> client

std::size_t Frontend::drain_worker_rings() {
  std::size_t total = 0;
  for (auto& link : workers_) {
    const std::size_t n = link->from_worker.poll(
        [&](const shm::Record& r) { link->records.visit(r, [this](const auto& p) { on(p); }); },
        kRingBatch);
    if (n != 0) {
      flush_batch();  // the batch's spans point into the ring: write before commit
      link->from_worker.commit();
      total += n;
    }
  }
  flush_kcp();  // what the workers sent to KCP sessions leaves now, not at the next interval
  return total;
}

void Frontend::on(const ipc::Parsed<ipc::SendHeader>& send) {
  Connection* c = find(shm::ConnectionId(send.header.conn));
  if (c == nullptr || c->socket_closed || c->lingering) {
    // The connection closed while the worker was answering it; the worker
    // learns of the close from our kConnClosed and logs the session's end.
    metrics_.add(metrics::kDroppedToClient);
    spdlog::debug("conn {:#x}: {} bytes for a closed connection discarded", send.header.conn,
                  send.tail.size());
    return;
  }
  metrics_.add(metrics::kClientFramesSent);
  if (c->kcp) {
    send_kcp(*c, send.tail);
    return;
  }
  if (!c->out.empty() || c->writing || c->link) {
    queue_output(*c, send.tail);
    return;
  }
  const std::size_t index = batch_.size();
  batch_.emplace_back(c, send.tail);
  batch_next_.push_back(SIZE_MAX);
  if (c->batch_first == SIZE_MAX) {
    c->batch_first = index;
  } else {
    batch_next_[c->batch_last] = index;
  }
  c->batch_last = index;
}

void Frontend::on(const ipc::Parsed<ipc::CloseCommand>& close) {
  flush_batch();  // everything sent before the close goes first
  Connection* c = find(shm::ConnectionId(close.header.conn));
  if (c == nullptr) return;
  c->worker_closed = true;
  if (close.header.reason < static_cast<std::uint32_t>(CloseReason::kCount)) {
    c->close_reason = static_cast<CloseReason>(close.header.reason);
  }
  if (c->socket_closed || (c->link && !c->link_ready)) {
    // We closed first (this was the worker's acknowledgement), or a link
    // still in its handshake: nothing to flush or say goodbye over.
    destroy(*c);
    return;
  }
  // Kicked: not read any more (what it sends now would be thrown away), its
  // output flushed and its FIN awaited within one linger.
  std::vector<std::byte>().swap(c->in);
  c->blocked = false;
  reading_.remove(*c);
  logging_in_.remove(*c);
  lingering_.push_back(*c, now_ms() + settings_.linger_ms);
  // Else the last write lingers once it is through (write_queued, write_link).
  if (c->out.empty() && !(c->link && c->writing)) start_linger(*c);
}

void Frontend::on(const ipc::Parsed<ipc::LoggedIn>& logged_in) {
  Connection* c = find(shm::ConnectionId(logged_in.header.conn));
  if (c == nullptr) return;
  c->logged_in = true;
  logging_in_.remove(*c);
  if (c->kcp && c->kcp->pending) {
    c->kcp->pending = false;
    --kcp_pending_;
  }
}

/// Writes the batch's sends with one sendmsg per connection: the records of
/// one connection are chained through batch_next_ in arrival order.
void Frontend::flush_batch() {
  if (batch_.empty()) return;
  iovec iov[kMaxIov];
  std::size_t chain[kMaxIov];
  for (std::size_t i = 0; i < batch_.size(); ++i) {
    Connection* c = batch_[i].first;
    if (c == nullptr || c->batch_first != i) continue;
    c->batch_first = SIZE_MAX;
    std::size_t at = i;
    while (at != SIZE_MAX && !c->socket_closed) {
      // Up to kMaxIov of this connection's records in one sendmsg.
      std::size_t count = 0, bytes = 0;
      for (; at != SIZE_MAX && count < kMaxIov; at = batch_next_[at]) {
        const auto span = batch_[at].second;
        chain[count] = at;
        iov[count++] = {const_cast<std::byte*>(span.data()), span.size()};
        bytes += span.size();
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = count;
      const ssize_t rc = ::sendmsg(c->socket.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        close_from_frontend(*c, CloseReason::kIoError);
        break;
      }
      std::size_t sent = rc < 0 ? 0 : static_cast<std::size_t>(rc);
      metrics_.add(metrics::kClientBytesSent, sent);
      if (sent == bytes) continue;
      // The socket is full: queue the unsent rest in order and wait for it.
      for (std::size_t k = 0; k < count && !c->socket_closed; ++k) {
        auto span = batch_[chain[k]].second;
        const std::size_t skip = std::min(sent, span.size());
        sent -= skip;
        if (skip < span.size()) queue_output(*c, span.subspan(skip));
      }
      for (; at != SIZE_MAX && !c->socket_closed; at = batch_next_[at]) {
        queue_output(*c, batch_[at].second);
      }
      break;
    }
  }
  batch_.clear();
  batch_next_.clear();
}

void Frontend::queue_output(Connection& c, std::span<const std::byte> bytes) {
  const std::size_t queued = c.out.size() - c.out_offset + (c.link ? c.link->writing_bytes() : 0);
  // A link takes one write at a time, and a ring batch queues behind it at
  // once: its bound is the bytes (and write-timeout), not the record count.
  if ((++c.out_records > settings_.txqueuelen && !c.link) ||
      queued + bytes.size() > settings_.txqueue_bytes) {
    spdlog::debug("conn {:#x}: {} records, {} bytes queued, over txqueuelen {} / txqueue-bytes {}",
                  c.id.value(), c.out_records, queued + bytes.size(), settings_.txqueuelen,
                  settings_.txqueue_bytes);
    kick_slow_consumer(c);
    return;
  }
  if (queued == 0) writing_.restart(c, now_ms() + settings_.write_timeout_ms);
  c.out.insert(c.out.end(), bytes.begin(), bytes.end());
  wait_writable(c);
}

/// Waits until the socket takes more output. The handler looks the
/// connection up by id: it may have been destroyed (and its slot reused) by
/// the time the wait completes.
void Frontend::wait_writable(Connection& c) {
  if (c.link) {
    write_link(c);
    return;
  }
  if (c.writing) return;
  c.writing = true;
  c.socket.async_wait(tcp::socket::wait_write, [this, id = c.id](boost::system::error_code ec) {
    Connection* conn = find(id);
    if (conn == nullptr) return;
    conn->writing = false;
    if (ec == asio::error::operation_aborted) return;
    on_writable(id);
  });
}

void Frontend::on_writable(shm::ConnectionId id) {
  Connection& c = *find(id);
  if (c.socket_closed) return;
  write_queued(c);
}

void Frontend::write_queued(Connection& c) {
  const std::size_t left = c.out.size() - c.out_offset;
  const ssize_t rc = ::send(c.socket.native_handle(), c.out.data() + c.out_offset, left,
                            MSG_NOSIGNAL | MSG_DONTWAIT);
  if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    close_from_frontend(c, CloseReason::kIoError);
    return;
  }
  c.out_offset += rc < 0 ? 0 : static_cast<std::size_t>(rc);
  metrics_.add(metrics::kClientBytesSent, rc < 0 ? 0 : static_cast<std::size_t>(rc));
  if (c.out_offset < c.out.size()) {
    if (rc > 0) writing_.restart(c, now_ms() + settings_.write_timeout_ms);  // it reads
    // Drop what went out once it is most of the buffer (amortised O(1)).
    if (c.out_offset > c.out.size() / 2) {
      c.out.erase(c.out.begin(), c.out.begin() + static_cast<std::ptrdiff_t>(c.out_offset));
      c.out_offset = 0;
    }
    wait_writable(c);
    return;
  }
  std::vector<std::byte>().swap(c.out);  // idle connections keep no buffer
  c.out_offset = 0;
  c.out_records = 0;  // caught up: txqueuelen counts from here
  writing_.remove(c);
  if (c.worker_closed) start_linger(c);
}

// ------------------------------------------------------------------ KCP over UDP

void Frontend::start_udp_read(std::size_t u) {
  udp_[u]->socket.async_wait(udp::socket::wait_read, [this, u](boost::system::error_code ec) {
    if (!ec) on_datagrams(u);
  });
}

/// Reads the datagrams waiting, a batch at a time (the rest of the duty
/// cycle runs between batches); waits again only once the socket is empty,
/// as its edge-triggered registration reports only new arrivals.
void Frontend::on_datagrams(std::size_t u) {
  UdpListener& l = *udp_[u];
  for (std::size_t n = 0; n < kDatagramBatch; ++n) {
    udp::endpoint from;
    boost::system::error_code ec;
    const std::size_t bytes = l.socket.receive_from(asio::buffer(datagram_), from, 0, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      start_udp_read(u);
      return;
    }
    if (ec) continue;  // an ICMP error of an earlier sendto (ECONNREFUSED): nothing to read
    if (bytes > kcp::kMaxDatagramBytes) {
      metrics_.add(metrics::kKcpDatagramsDropped);  // longer than kcp-go sends: truncated
      continue;
    }
    on_datagram(u, from, std::span<const std::byte>(datagram_.data(), bytes));
  }
  asio::post(io_, [this, u] { on_datagrams(u); });
}

void Frontend::on_datagram(std::size_t u, const udp::endpoint& from,
                           std::span<const std::byte> datagram) {
  const auto conv = kcp::peek_conv(datagram);
  if (!conv) {
    metrics_.add(metrics::kKcpDatagramsDropped);
    return;
  }
  UdpPeer peer{v6_bytes_of(from.address()), from.port(), udp_[u]->listener};
  if (const auto it = kcp_sessions_.find(peer); it != kcp_sessions_.end()) {
    Connection* const listed = find(it->second);
    if (listed == nullptr) {
      // forget_kcp() takes a session out of the table with its connection.
      spdlog::critical("KCP session table: conn {:#x} is listed but gone", it->second.value());
      std::abort();
    }
    Connection& c = *listed;
    KcpLink& k = *c.kcp;
    if (*conv == k.session.conv()) {
      const std::int64_t now = now_ms();
      const kcp::InputStatus status = k.session.input(datagram, kcp_clock(now));
      if (status != kcp::InputStatus::kAccepted) {
        metrics_.add(metrics::kKcpDatagramsDropped);
        spdlog::debug("conn {:#x}: KCP datagram refused: {}", c.id.value(), kcp::name_of(status));
        return;
      }
      // The client acknowledged some output: write-timeout starts again.
      if (const std::size_t unacked = k.session.unacknowledged_bytes(); unacked < k.unacked) {
        k.unacked = unacked;
        if (c.lingering && unacked == 0) {
          // Kicked, and everything delivered; the acks this datagram's own
          // data is owed go first, or the client resends it until its link
          // dies.
          k.session.flush(kcp_clock(now));
          destroy(c);
          return;
        }
        if (unacked == 0) {
          writing_.remove(c);
        } else if (!c.lingering) {
          writing_.restart(c, now + settings_.write_timeout_ms);
        }
      }
      pump_kcp(c);
      schedule_kcp(c);
      return;
    }
    // Another conversation from the same address and port: a client that
    // dialled again (kcp-go's listener replaces the session too), or a
    // stray datagram of an older one.
    if (!kcp::is_session_opener(datagram)) {
      metrics_.add(metrics::kKcpDatagramsDropped);
      return;
    }
    spdlog::debug("conn {:#x}: replaced by conv {:#x} from the same address", c.id.value(), *conv);
    close_from_frontend(c, CloseReason::kClientClosed);
  }
  if (!kcp::is_session_opener(datagram)) {
    metrics_.add(metrics::kKcpDatagramsDropped);
    return;
  }
  open_kcp(u, peer, from, datagram);
}

/// The bounds an accept has, and KCP's own (udp-pending-sessions,
/// udp-sessions-per-ip). True: counted in per_address_ and kcp_per_address_.
bool Frontend::admit_kcp(const udp::endpoint& from, AddressLimit::Key address, bool limit_address) {
  const auto refuse = [&](metrics::Counter counter, std::string_view why) {
    metrics_.add(counter);
    kcp_refused_log_.log("KCP session from {} refused: {}", from.address().to_string(), why);
    return false;
  };
  if (draining_) return refuse(metrics::kKcpRefusedLimit, "draining");
  if (kcp_pending_ >= settings_.udp_pending_sessions) {
    return refuse(metrics::kKcpRefusedPending, "udp-pending-sessions reached");
  }
  if (const auto verdict = connect_rate_.admit(address, limit_address, now_ms());
      verdict != ConnectRate::Verdict::kAccept) {
    return refuse(metrics::kKcpRefusedRate, verdict == ConnectRate::Verdict::kOverTotal
                                                ? "over connect-rate"
                                                : "over connect-rate-per-ip");
  }
  if (!kcp_per_address_.try_add(address, limit_address)) {
    return refuse(metrics::kKcpRefusedLimit, "udp-sessions-per-ip reached");
  }
  if (!per_address_.try_add(address, limit_address)) {
    kcp_per_address_.remove(address);
    return refuse(metrics::kKcpRefusedLimit, "max-connections-per-ip reached");
  }
  return true;
}

/// A session opener from a new peer: a connection as an accept makes one
/// (a slot, kConnOpened, the read and login deadlines), then its datagram.
void Frontend::open_kcp(std::size_t u, const UdpPeer& peer, const udp::endpoint& from,
                        std::span<const std::byte> opener) {
  const AddressLimit::Key address = AddressLimit::key_of(from.address());
  const bool limit_address = !exempt_from_address_limits(peer.address.data());
  const kcp::Options options{.send_window = settings_.udp_sndwnd,
                             .receive_window = settings_.udp_rcvwnd,
                             .mtu = settings_.udp_mtu,
                             .nodelay = settings_.kcp_nodelay != 0,
                             .interval = settings_.kcp_interval_ms,
                             .fast_resend = settings_.kcp_resend,
                             .send_buffer_bytes = settings_.txqueue_bytes};
  if (const std::string_view wrong = kcp::Connection::validate(options); !wrong.empty()) {
    kcp_refused_log_.log("KCP session refused: the KCP settings are unusable: {}", wrong);
    return;
  }
  if (!admit_kcp(from, address, limit_address)) return;
  const std::optional<shm::ConnectionId> id = allocate_slot();
  if (!id) {
    per_address_.remove(address);
    kcp_per_address_.remove(address);
    metrics_.add(metrics::kKcpRefusedLimit);
    kcp_refused_log_.log("KCP session from {} refused: connection limit {} reached",
                         from.address().to_string(), capacity_);
    return;
  }
  metrics_.add(metrics::kConnectionsAccepted);
  metrics_.add(metrics::kKcpSessionsAccepted);
  const std::uint32_t worker = worker_of_slot(id->slot(), settings_);
  auto conn = std::make_unique<Connection>(io_, *id, worker);
  const int fd = udp_[u]->socket.native_handle();
  conn->kcp = std::make_unique<KcpLink>(
      *kcp::peek_conv(opener), options,
      [fd, to = from](std::span<const std::byte> d) {
        // A datagram the socket cannot take now is lost like any other:
        // KCP sends it again.
        ::sendto(fd, d.data(), d.size(), MSG_DONTWAIT | MSG_NOSIGNAL, to.data(),
                 static_cast<socklen_t>(to.size()));
      },
      peer);
  conn->address = address;
  conn->address_counted = true;
  Connection& c = *conn;
  by_slot_[id->slot()] = std::move(conn);
  ++connection_count_;
  ++kcp_open_;
  ++kcp_pending_;
  kcp_sessions_.emplace(peer, *id);

  const std::int64_t now = announce(c, peer.address.data(), from.port(), udp_[u]->listener);
  (void)c.kcp->session.input(opener, kcp_clock(now));  // an opener is well formed
  pump_kcp(c);
  schedule_kcp(c);
}

/// Takes the session's stream into the framing (take_input), as far as the
/// ring lets it: a full ring leaves the rest in the session, whose window
/// then closes on the client (retry_blocked pumps again).
void Frontend::pump_kcp(Connection& c) {
  kcp::Connection& session = c.kcp->session;
  if (c.worker_closed || c.socket_closed) {
    // Kicked (or closed): what it sends goes nowhere, but it is read, so
    // that the window stays open for the acks of the linger.
    while (session.readable() != 0) session.receive(scratch_);
    return;
  }
  while (!c.blocked && session.readable() != 0) {
    const std::size_t n = session.receive(scratch_);
    metrics_.add(metrics::kClientBytesReceived, n);
    if (!take_input(c, std::span<const std::byte>(scratch_.data(), n))) return;
  }
}

/// A worker's kSend: into the session's send buffer, flushed after the
/// batch. Past txqueue-bytes unacknowledged the client is not keeping up.
void Frontend::send_kcp(Connection& c, std::span<const std::byte> bytes) {
  KcpLink& k = *c.kcp;
  if (k.session.send(bytes) == kcp::Connection::SendStatus::kFull) {
    spdlog::debug("conn {:#x}: {} bytes unacknowledged, over txqueue-bytes {}", c.id.value(),
                  k.session.unacknowledged_bytes(), settings_.txqueue_bytes);
    kick_slow_consumer(c);
    return;
  }
  metrics_.add(metrics::kClientBytesSent, bytes.size());
  if (k.unacked == 0) writing_.restart(c, now_ms() + settings_.write_timeout_ms);
  k.unacked = k.session.unacknowledged_bytes();
  if (!k.dirty) {
    k.dirty = true;
    kcp_dirty_.push_back(c.id);
  }
}

void Frontend::flush_kcp() {
  if (kcp_dirty_.empty()) return;
  const std::int64_t now = now_ms();
  for (const shm::ConnectionId id : kcp_dirty_) {
    Connection* c = find(id);
    if (c == nullptr || c->socket_closed) continue;
    c->kcp->dirty = false;
    c->kcp->session.flush(kcp_clock(now));
    if (c->lingering && c->kcp->session.unacknowledged_bytes() == 0) {
      destroy(*c);  // nothing left to deliver
      continue;
    }
    schedule_kcp(*c);
  }
  kcp_dirty_.clear();
}

/// Puts the session's next update() in the timer heap, unless one as early
/// is there; arms the tick for the heap's earliest.
void Frontend::schedule_kcp(Connection& c) {
  KcpLink& k = *c.kcp;
  if (c.socket_closed) return;
  const std::int64_t now = now_ms();
  const kcp::Millis clock = kcp_clock(now);
  const std::int64_t due = now + static_cast<std::int32_t>(k.session.check(clock) - clock);
  if (k.scheduled && due >= k.due) return;
  k.scheduled = true;
  k.due = due;
  kcp_timers_.emplace(due, c.id.value());
  if (kcp_ticking_ && due >= kcp_tick_at_) return;
  kcp_ticking_ = true;
  kcp_tick_at_ = due;
  kcp_tick_.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(due - now, 0)));
  kcp_tick_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // re-armed earlier
    kcp_ticking_ = false;
    tick_kcp();
  });
}

/// Runs the updates that are due: acks, resends, window probes. A session
/// whose client stopped acknowledging (dead) is closed; one lingering ends
/// once its output is acknowledged.
void Frontend::tick_kcp() {
  const std::int64_t now = now_ms();
  std::vector<shm::ConnectionId> due;
  while (!kcp_timers_.empty() && kcp_timers_.top().first <= now) {
    const auto [at, value] = kcp_timers_.top();
    kcp_timers_.pop();
    Connection* c = find(shm::ConnectionId(value));
    if (c == nullptr || !c->kcp || !c->kcp->scheduled || c->kcp->due != at) continue;  // stale
    c->kcp->scheduled = false;
    due.push_back(c->id);
  }
  for (const shm::ConnectionId id : due) {
    Connection* c = find(id);
    if (c == nullptr || c->socket_closed) continue;
    KcpLink& k = *c->kcp;
    k.session.update(kcp_clock(now));
    if (k.session.dead()) {
      spdlog::debug("conn {:#x}: KCP link dead (a segment unacknowledged {} times)", c->id.value(),
                    kcp::Options{}.dead_link);
      if (c->worker_closed) {
        destroy(*c);
      } else {
        close_from_frontend(*c, CloseReason::kIoError);
      }
      continue;
    }
    if (c->lingering && k.session.unacknowledged_bytes() == 0) {
      destroy(*c);
      continue;
    }
    schedule_kcp(*c);
  }
  if (!kcp_ticking_ && !kcp_timers_.empty()) {
    // Arm for the earliest entry left (stale ones cost a spurious wake).
    kcp_ticking_ = true;
    kcp_tick_at_ = kcp_timers_.top().first;
    kcp_tick_.expires_after(
        std::chrono::milliseconds(std::max<std::int64_t>(kcp_tick_at_ - now, 0)));
    kcp_tick_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      kcp_ticking_ = false;
      tick_kcp();
    });
  }
}

/// Out of the session table: its datagrams are strangers' from now on.
void Frontend::forget_kcp(Connection& c) {
  KcpLink& k = *c.kcp;
  if (!k.listed) return;
  k.listed = false;
  kcp_sessions_.erase(k.peer);
  kcp_per_address_.remove(c.address);
  if (k.pending) {
    k.pending = false;
    --kcp_pending_;
  }
}

// ------------------------------------------------------------------ TLS, WebSocket

void Frontend::open_link(Connection& c, StreamLink::Kind kind, tcp::socket socket,
                         std::span<const std::byte> first_bytes) {
  c.link = StreamLink::make(
      kind, std::move(socket), tls_,
      {.max_payload = settings_.max_frame, .allowed_origins = settings_.ws_origins});
  ++links_open_[static_cast<std::size_t>(kind)];
  // A ping is a sign of life, as a frame is.
  c.link->on_control([this, id = c.id] {
    if (Connection* conn = find(id)) touch(*conn);
  });
  c.link->open(first_bytes, [this, id = c.id](StreamLink::Failure failure, std::string_view why) {
    if (Connection* conn = find(id)) on_link_open(*conn, failure, why);
  });
}

void Frontend::on_link_open(Connection& c, StreamLink::Failure failure, std::string_view why) {
  if (c.socket_closed || c.worker_closed) return;  // a deadline or a kick came first
  if (failure != StreamLink::Failure::kNone) {
    metrics_.add(failure == StreamLink::Failure::kTls      ? metrics::kHandshakesFailedTls
                 : failure == StreamLink::Failure::kOrigin ? metrics::kHandshakesFailedOrigin
                                                           : metrics::kHandshakesFailedRequest);
    handshake_log_.log("conn {:#x}: {} handshake failed: {}", c.id.value(), name_of(c.link->kind()),
                       why);
    close_from_frontend(c, CloseReason::kHandshakeFailed);
    return;
  }
  c.link_ready = true;
  write_link(c);
  start_read(c);
}

void Frontend::on_link_input(Connection& c, StreamLink::Input input,
                             std::span<const std::byte> bytes) {
  if (c.socket_closed || c.worker_closed) return;  // closed, or kicked: it goes nowhere
  switch (input) {
    case StreamLink::Input::kBytes:
      metrics_.add(metrics::kClientBytesReceived, bytes.size());
      // Closed, or blocked on a full ring (retry_blocked reads on).
      if (!bytes.empty() && !take_input(c, bytes)) return;
      start_read(c);
      return;
    case StreamLink::Input::kClosed:
      close_from_frontend(c, CloseReason::kClientClosed);
      return;
    case StreamLink::Input::kError:
      close_from_frontend(c, CloseReason::kIoError);
      return;
    case StreamLink::Input::kTooLarge:
      spdlog::debug("conn {:#x}: WebSocket message over the {} byte limit", c.id.value(),
                    settings_.max_frame);
      close_from_frontend(c, CloseReason::kFrameTooLarge);
      return;
    case StreamLink::Input::kText:
      spdlog::debug("conn {:#x}: WebSocket text message (frames are binary messages)",
                    c.id.value());
      close_from_frontend(c, CloseReason::kTextFrame);
      return;
  }
}

/// Hands what is queued to the link, one write at a time; the next starts
/// when it is through (the client took it: write-timeout starts again).
void Frontend::write_link(Connection& c) {
  if (c.writing || !c.link_ready || c.socket_closed || c.out.size() == c.out_offset) return;
  std::vector<std::byte> frames;
  frames.swap(c.out);
  if (c.out_offset != 0) {
    frames.erase(frames.begin(), frames.begin() + static_cast<std::ptrdiff_t>(c.out_offset));
  }
  c.out_offset = 0;
  c.writing = true;
  c.link->write(std::move(frames), [this, id = c.id](bool ok, std::size_t n) {
    Connection* conn = find(id);
    if (conn == nullptr) return;
    conn->writing = false;
    if (conn->socket_closed) return;
    if (!ok) {
      close_from_frontend(*conn, CloseReason::kIoError);
      return;
    }
    metrics_.add(metrics::kClientBytesSent, n);
    if (!conn->out.empty()) {
      writing_.restart(*conn, now_ms() + settings_.write_timeout_ms);
      write_link(*conn);
      return;
    }
    conn->out_records = 0;  // caught up: txqueuelen counts from here
    writing_.remove(*conn);
    if (conn->worker_closed) start_linger(*conn);
  });
}

bool Frontend::load_tls() {
  try {
    tls_ = net::load_server_tls(settings_.tls_cert, settings_.tls_key);
    spdlog::info("TLS: serving the certificate in {}", settings_.tls_cert);
    return true;
  } catch (const std::runtime_error& e) {
    spdlog::error("TLS: {}{}", e.what(),
                  tls_ ? "; new connections keep the certificate loaded before" : "");
    return false;
  }
}

// ------------------------------------------------------------------ closing

void Frontend::close_from_frontend(Connection& c, CloseReason reason) {
  if (c.socket_closed) return;
  c.socket_closed = true;
  if (c.kcp) forget_kcp(c);
  if (c.link) c.link->close();
  boost::system::error_code ec;
  c.socket.close(ec);
  unlist(c);
  std::vector<std::byte>().swap(c.in);
  std::vector<std::byte>().swap(c.out);
  c.out_offset = 0;
  if (c.worker_closed) {
    destroy(c);  // the worker already said goodbye (a kick crossed our close)
    return;
  }
  const ipc::ConnClosed closed{c.id.value(), static_cast<std::uint32_t>(reason), 0};
  send_control(c.worker, ipc::kConnClosed, &closed, sizeof closed);
}

void Frontend::start_linger(Connection& c) {
  if (c.lingering || c.socket_closed) return;
  spdlog::debug("conn {:#x}: output flushed, lingering", c.id.value());
  if (c.kcp) {
    // No FIN in KCP: the linger ends when the client has acknowledged the
    // output (flush_kcp, tick_kcp), or at the deadline.
    c.lingering = true;
    std::vector<std::byte>().swap(c.in);
    writing_.remove(c);
    if (!c.kcp->dirty) {
      c.kcp->dirty = true;
      kcp_dirty_.push_back(c.id);
    }
    return;
  }
  if (c.link) {
    // The layer's goodbye (a close frame, close_notify), answered or cut off
    // at the linger deadline.
    c.lingering = true;
    std::vector<std::byte>().swap(c.in);
    writing_.remove(c);
    c.link->close_gracefully(c.worker_closed ? to_string(c.close_reason) : "", [this, id = c.id] {
      if (Connection* conn = find(id)) destroy(*conn);
    });
    return;
  }
  c.lingering = true;
  boost::system::error_code ec;
  c.socket.shutdown(tcp::socket::shutdown_send, ec);
  std::vector<std::byte>().swap(c.in);
  writing_.remove(c);
  start_read(c);
}

/// Closes the socket now; the slot and the object are freed by reap(), since
/// a batch or a handler up the stack may still hold the pointer.
void Frontend::destroy(Connection& c) {
  if (c.dead) return;
  c.dead = true;
  c.socket_closed = true;
  if (c.kcp) forget_kcp(c);
  if (c.link) c.link->close();
  unlist(c);
  boost::system::error_code ec;
  c.socket.close(ec);
  graveyard_.push_back(c.id);
}

void Frontend::reap() {
  for (const shm::ConnectionId id : graveyard_) {
    const Connection& c = *by_slot_[id.slot()];
    if (c.address_counted) per_address_.remove(c.address);
    if (c.kcp) --kcp_open_;
    if (c.link) --links_open_[static_cast<std::size_t>(c.link->kind())];
    table_.release(id);
    by_slot_[id.slot()].reset();
    --connection_count_;
  }
  graveyard_.clear();
}

void Frontend::touch(Connection& c) {
  if (reading_.contains(c)) reading_.restart(c, now_ms() + settings_.read_timeout_ms);
}

void Frontend::unlist(Connection& c) {
  reading_.remove(c);
  lingering_.remove(c);
  writing_.remove(c);
  logging_in_.remove(c);
}

/// The client does not take its output: kicked, its queue dropped (counted).
/// A connection the worker has kicked already is simply closed.
void Frontend::kick_slow_consumer(Connection& c) {
  if (c.worker_closed) {
    destroy(c);
  } else {
    close_from_frontend(c, CloseReason::kSlowConsumer);
  }
}

void Frontend::sweep_deadlines() {
  flush_log_limits(monotonic_ns());  // counts of suppressed warnings, once a flood is over
  const std::int64_t now = now_ms();
  connect_rate_.prune(now);
  while (Connection* c = reading_.pop_expired(now)) {
    close_from_frontend(*c, CloseReason::kReadTimeout);
  }
  while (Connection* c = logging_in_.pop_expired(now)) {
    close_from_frontend(*c, CloseReason::kLoginTimeout);
  }
  while (Connection* c = writing_.pop_expired(now)) {
    spdlog::debug("conn {:#x}: took no output for the write timeout", c->id.value());
    kick_slow_consumer(*c);
  }
  while (Pending* p = proxy_waiting_.pop_expired(now)) {
    refuse_proxy(*p, metrics::kProxyRefusedTimeout, "no PROXY header within its deadline");
  }
  while (Connection* c = lingering_.pop_expired(now)) {
    spdlog::debug("conn {:#x}: not flushed, or no FIN, within the linger time", c->id.value());
    destroy(*c);
  }
  sweep_timer_.expires_after(std::chrono::milliseconds(100));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) sweep_deadlines();
  });
}

// ------------------------------------------------------------------ plumbing

Frontend::Connection* Frontend::find(shm::ConnectionId id) const {
  if (id.slot() >= by_slot_.size()) return nullptr;
  Connection* c = by_slot_[id.slot()].get();
  return c != nullptr && c->id == id ? c : nullptr;
}

void Frontend::send_control(std::uint32_t worker, ipc::RecordType type, const void* header,
                            std::size_t bytes) {
  WorkerLink& link = *workers_[worker];
  const std::span<const std::byte> record(static_cast<const std::byte*>(header), bytes);
  if (link.control_backlog.empty() &&
      link.to_worker.try_write(type, record) == shm::WriteStatus::kOk) {
    return;
  }
  link.control_backlog.emplace_back(record.begin(), record.end());
  link.control_types.push_back(type);
}

void Frontend::flush_control() {
  for (auto& link : workers_) {
    while (!link->control_backlog.empty() &&
           link->to_worker.try_write(link->control_types.front(), link->control_backlog.front()) ==
               shm::WriteStatus::kOk) {
      link->control_backlog.pop_front();
      link->control_types.pop_front();
    }
  }
}

void Frontend::publish_all() {
  for (auto& link : workers_) link->to_worker.publish();
}

void Frontend::arm_doorbell() {
  if (doorbell_armed_) return;
  doorbell_armed_ = true;
  doorbell_wait_.async_wait(asio::posix::stream_descriptor::wait_read,
                            [this](boost::system::error_code) {
                              doorbell_armed_ = false;
                              doorbell_.drain();
                            });
}

void Frontend::park(std::chrono::nanoseconds timeout) {
  std::size_t raised = 0;
  for (; raised < workers_.size(); ++raised) {
    if (!workers_[raised]->from_worker.prepare_park()) break;
  }
  if (raised == workers_.size()) {
    arm_doorbell();
    parked_handlers_ = io_.run_one_for(timeout);
  }
  for (std::size_t i = 0; i < raised; ++i) workers_[i]->from_worker.unpark();
}

void Frontend::begin_drain() {
  if (draining_) return;
  draining_ = true;
  for (auto& a : acceptors_) {
    // Out of the port, not just out of our epoll: the supervisor holds the
    // listener too, and a listener nobody accepts from would leave new
    // clients waiting in its backlog. Refused, they reconnect elsewhere (with
    // --reuse-port the kernel hands them to the port's other instances).
    ::shutdown(a->native_handle(), SHUT_RD);
    boost::system::error_code ec;
    a->close(ec);
  }
  // Connections still waiting for their PROXY header have no session to
  // end: closed.
  while (!pending_.empty()) drop_pending(*pending_.begin()->second);
  // The UDP sockets stay: they carry the KCP sessions open, and openers are
  // refused from now on (on_datagram).
  spdlog::info("draining: stopped accepting, {} connections open", connection_count_);
}

/// A frontend that starts over a live table took over from one that died:
/// the kernel closed that one's sockets, so every live slot is a connection
/// that is gone. Each is closed towards its worker (which logs it and
/// acknowledges) and released on the acknowledgement, as any other close.
void Frontend::adopt_orphans() {
  std::size_t orphans = 0;
  for (std::uint32_t slot = 0; slot < table_.slots(); ++slot) {
    if (frontend_of_slot(slot, settings_) != index_) continue;  // another frontend's
    const shm::ConnectionId id = table_.live_id(slot);
    if (!id) continue;
    auto conn = std::make_unique<Connection>(io_, id, worker_of_slot(slot, settings_));
    conn->socket_closed = true;
    by_slot_[slot] = std::move(conn);
    ++connection_count_;
    ++orphans;
    const ipc::ConnClosed closed{id.value(), static_cast<std::uint32_t>(CloseReason::kIoError), 0};
    send_control(worker_of_slot(slot, settings_), ipc::kConnClosed, &closed, sizeof closed);
  }
  if (orphans != 0) {
    spdlog::warn("{} connections of a previous frontend were lost with it; closing their sessions",
                 orphans);
  }
}

void Frontend::apply_settings() {
  settings_generation_ = segment_.settings_generation();
  settings_ = segment_.settings();
  per_address_.set_limit(settings_.max_connections_per_ip);
  kcp_per_address_.set_limit(settings_.udp_sessions_per_ip);
  connect_rate_.set_rates(settings_.connect_rate, settings_.connect_rate_per_ip);
  spdlog::set_level(static_cast<spdlog::level::level_enum>(settings_.log_level));
  if (tls_) load_tls();  // a renewed certificate, for new connections
  spdlog::info(
      "settings reloaded: read-timeout {} ms, max-frame {}, txqueuelen {}, "
      "max-connections-per-ip {}",
      settings_.read_timeout_ms, settings_.max_frame, settings_.txqueuelen,
      settings_.max_connections_per_ip);
}

void Frontend::start() {
  adopt_orphans();
  for (std::size_t i = 0; i < acceptors_.size(); ++i) start_accept(i);
  for (std::size_t u = 0; u < udp_.size(); ++u) start_udp_read(u);
  sweep_deadlines();
}

std::size_t Frontend::run_ready_handlers() {
  const auto until = std::chrono::steady_clock::now() + kHandlerBudget;
  std::size_t n = 0;
  while (io_.poll_one() != 0) {
    // The clock every few handlers: most take microseconds.
    if (++n % 16 == 0 && std::chrono::steady_clock::now() >= until) break;
  }
  return n;
}

std::size_t Frontend::do_work() {
  std::size_t work =
      parked_handlers_ != 0 ? std::exchange(parked_handlers_, 0) : run_ready_handlers();
  flush_control();
  retry_blocked();
  work += drain_worker_rings();
  publish_all();
  reap();
  metrics_.set(metrics::kConnectionsOpen, static_cast<std::int64_t>(connection_count_));
  metrics_.set(metrics::kKcpSessionsOpen, static_cast<std::int64_t>(kcp_open_));
  metrics_.set(metrics::kTlsConnectionsOpen, static_cast<std::int64_t>(links_open_[0]));
  metrics_.set(metrics::kWsConnectionsOpen, static_cast<std::int64_t>(links_open_[1]));
  metrics_.set(metrics::kWssConnectionsOpen, static_cast<std::int64_t>(links_open_[2]));
  segment_.control().frontends[index_].heartbeat_ns.store(monotonic_ns(),
                                                          std::memory_order_relaxed);
  if (drain_requested_ != 0 || segment_.draining()) begin_drain();
  if (segment_.settings_generation() != settings_generation_) apply_settings();
  return work;
}

bool Frontend::drained() const noexcept {
  return draining_ && connection_count_ == 0;
}

int Frontend::run() {
  start();
  shm::BackoffIdler idler =
      shm::BackoffIdler::duty_cycle(std::chrono::microseconds(settings_.idle_spin_us));
  for (;;) {
    const std::size_t work = do_work();
    if (drained()) break;
    idler.idle(work, [this](std::chrono::nanoseconds timeout) { park(timeout); });
  }
  spdlog::info("drained: all connections closed");
  return 0;
}

}  // namespace gatehouse::frontend
