// Frontend: owns the client sockets. Accepts, reads `| size u16 | payload |`
// frames, enforces the frame size limit, the read deadline and the
// connection limits (total and per client address), hands frames to the
// worker that owns the connection over its ring, and writes the workers'
// output back, many frames per syscall. It knows nothing of sessions beyond
// "connection id -> socket".
//
// One thread runs a duty cycle: Asio handlers (sockets, timers) via
// io_context::poll(), then the worker->frontend rings, then one publish per
// frontend->worker ring; when a pass finds nothing to do it spins, yields,
// then parks in io_context::run_one_for() with the doorbell armed, so either
// a socket or a worker wakes it. The pass after a park that ran a handler
// skips the poll: the park has just asked epoll, and asking again at once
// costs a syscall that finds nothing (the handlers epoll returned with it
// run in the pass after).
//
// Connection lifecycle (see contract/records.h for the protocol):
//
//   accept -> kOpen --(client EOF / error / timeout / too large / slow)--> close
//      socket, tell the worker (kConnClosed) --(worker's kClose)--> released
//   kOpen --(worker's kClose)--> not read any more; flush queued output -->
//      shutdown(SHUT_WR) and linger until the client's FIN --> close socket,
//      released. The flush and the FIN get linger_ms between them.
//
// A listener with proxy= (docs/proxy-protocol.md) first reads the PROXY
// header a load balancer sends, within min(read-timeout, 5 s) and holding
// no session slot meanwhile (Pending); the connection is admitted (per-address
// limits, a slot, kConnOpened) under the client address the header names,
// and the bytes after the header are its first frames.
//
// Per-connection bounds (docs/security.md): a whole frame within read-timeout
// (read_timeout); login within login-timeout of accept (login_timeout), and
// until then at most prelogin-frames / prelogin-bytes (prelogin_exceeded);
// output queued at most txqueuelen frames and txqueue-bytes, and some of it
// taken within write-timeout (slow_consumer).
//
// KCP over UDP (docs/kcp.md): a listener with transport=kcp also has a UDP
// socket on its address. A datagram that is a session opener from a new
// (address, port) becomes a connection like an accepted one (the same
// limits, a slot, kConnOpened), with a kcp::Connection in place of the TCP
// socket; its byte stream goes through the same framing and bounds, and the
// workers' output into the KCP send buffer (full: slow_consumer). A kick
// lingers until the client acknowledged the output, then forgets the
// session; a client that redials from the same port (a new conv, sn 0)
// replaces its session, as kcp-go's listener does.
//
// TLS and WebSocket (docs/websocket.md): a connection of a tls, ws or wss
// listener is admitted as any other (limits, a slot, kConnOpened), then its
// StreamLink (stream_link.h) does the TLS handshake and/or the upgrade within
// the read deadline; a failure closes it handshake_failed. From then on the
// link's input goes through the same framing and bounds, and the workers'
// output through the link, one write at a time (queued meanwhile, bounded
// by txqueuelen and txqueue-bytes as for TCP). A kick flushes, then closes
// the layer (close frame, close_notify) within the linger time.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <span>
#include <unordered_map>
#include <vector>

#include "gatehouse/base/log_limit.h"
#include "gatehouse/contract/close_reason.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/contract/record_reader.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/frontend/address_limit.h"
#include "gatehouse/frontend/connect_rate.h"
#include "gatehouse/frontend/deadline_list.h"
#include "gatehouse/frontend/stream_link.h"
#include "gatehouse/shm/doorbell.h"
#include "gatehouse/shm/session_table.h"

namespace gatehouse::frontend {

class Frontend {
 public:
  /// `listen_fds`: listening sockets opened by the supervisor, one for each
  /// listener with TCP (Settings::listener_transports; 0 counts as TCP);
  /// `udp_fds`: UDP sockets, one for each listener with KCP, in order.
  /// `doorbell`: this process's; `worker_doorbells[i]`: worker i's.
  /// `index`: which of the settings' frontends this is (its slots, rings,
  /// metrics shard and status).
  Frontend(GatewaySegment& segment, std::uint32_t index, const std::vector<int>& listen_fds,
           shm::Doorbell doorbell, std::vector<shm::Doorbell> worker_doorbells,
           const std::vector<int>& udp_fds = {});
  ~Frontend();

  /// start(), then do_work() until drained(), idling (spin, yield, park on
  /// the doorbell and the sockets) while there is nothing to do; returns the
  /// process exit code.
  int run();
  /// Takes over the connections a previous frontend left (none at a first
  /// start) and starts accepting. Once, before the first do_work().
  void start();
  /// One pass of the duty cycle: socket events handled, records to the
  /// workers published, the workers' output written to the sockets, closes
  /// reaped, the drain and a new settings generation applied. Returns the
  /// work done (0: nothing to do). A test drives the frontend with it.
  std::size_t do_work();
  /// A drain has closed every connection: run() returns.
  bool drained() const noexcept;
  /// Async-signal-safe: begin draining (stop accepting, wait for connections
  /// to close).
  void request_drain() noexcept;

 private:
  struct Connection;
  struct WorkerLink;
  struct Pending;  // accepted on a proxy= listener, its PROXY header not read yet
  struct KcpLink;  // a KCP session's state, in place of the TCP socket
  struct UdpListener;
  /// A KCP session's key: who sends to which listener (kcp-go keys by the
  /// address alone, and so one session per address and port).
  struct UdpPeer {
    std::array<std::uint8_t, 16> address;  // IPv4-mapped for IPv4
    std::uint16_t port;
    std::uint16_t listener;
    bool operator==(const UdpPeer&) const = default;
  };
  struct UdpPeerHash {
    std::size_t seed;
    std::size_t operator()(const UdpPeer& p) const noexcept;
  };

  // accept
  void adopt_orphans();
  void start_accept(std::size_t acceptor);  // once --connect-rate has a token
  void start_accept_now(std::size_t acceptor);
  bool exempt_from_address_limits(const std::uint8_t* v6) const noexcept;
  void on_accept(std::size_t acceptor, boost::asio::ip::tcp::socket socket);
  std::optional<shm::ConnectionId> allocate_slot();
  std::int64_t announce(Connection& c, const std::uint8_t* v6, std::uint16_t port,
                        std::uint16_t listener);
  /// Admits a connection whose client is `client` (the peer, or the address
  /// a PROXY header named): limits, a slot, kConnOpened, then `first_bytes`
  /// (read with the header) as its first input.
  void open_connection(std::size_t listener, boost::asio::ip::tcp::socket socket,
                       const boost::asio::ip::tcp::endpoint& client,
                       std::span<const std::byte> first_bytes);
  // PROXY protocol (proxy= listeners)
  void expect_proxy_header(std::size_t listener, boost::asio::ip::tcp::socket socket,
                           const boost::asio::ip::tcp::endpoint& peer);
  bool trusted_proxy(std::size_t listener, const std::uint8_t* v6) const noexcept;
  void start_proxy_read(Pending& p);
  void on_proxy_bytes(Pending& p, boost::system::error_code ec, std::size_t n);
  void refuse_proxy(Pending& p, metrics::Counter reason, std::string_view why);
  void drop_pending(Pending& p);
  void refuse_for_rate(boost::asio::ip::tcp::socket& socket,
                       const boost::asio::ip::tcp::endpoint& remote, bool total);
  // client -> worker
  void start_read(Connection& c);
  void on_readable(Connection& c, boost::system::error_code ec, std::size_t n);
  bool take_input(Connection& c, std::span<const std::byte> bytes);
  bool forward_frames(Connection& c, std::span<const std::byte> bytes);
  bool within_prelogin_budget(Connection& c, std::size_t frame_bytes);
  void retry_blocked();
  // worker -> client
  std::size_t drain_worker_rings();
  // One per record type from a worker, decoded and checked by its ring's
  // RecordReader.
  void on(const ipc::Parsed<ipc::SendHeader>& send);
  void on(const ipc::Parsed<ipc::CloseCommand>& close);
  void on(const ipc::Parsed<ipc::LoggedIn>& logged_in);
  void flush_batch();
  void write_queued(Connection& c);
  void wait_writable(Connection& c);
  void on_writable(shm::ConnectionId id);
  void queue_output(Connection& c, std::span<const std::byte> bytes);
  // KCP over UDP
  void start_udp_read(std::size_t udp);
  void on_datagrams(std::size_t udp);
  void on_datagram(std::size_t udp, const boost::asio::ip::udp::endpoint& from,
                   std::span<const std::byte> datagram);
  void open_kcp(std::size_t udp, const UdpPeer& peer, const boost::asio::ip::udp::endpoint& from,
                std::span<const std::byte> opener);
  bool admit_kcp(const boost::asio::ip::udp::endpoint& from, AddressLimit::Key address,
                 bool limit_address);
  void pump_kcp(Connection& c);
  void send_kcp(Connection& c, std::span<const std::byte> bytes);
  void schedule_kcp(Connection& c);
  void flush_kcp();
  void tick_kcp();
  void forget_kcp(Connection& c);  // out of the session table and its counts
  // TLS, WebSocket
  void open_link(Connection& c, StreamLink::Kind kind, boost::asio::ip::tcp::socket socket,
                 std::span<const std::byte> first_bytes);
  void on_link_open(Connection& c, StreamLink::Failure failure, std::string_view why);
  void on_link_input(Connection& c, StreamLink::Input input, std::span<const std::byte> bytes);
  void write_link(Connection& c);
  /// The tls and wss listeners' context from tls-cert and tls-key (at start
  /// and at each reload: a renewed certificate); false if they do not load.
  bool load_tls();
  // closing
  void close_from_frontend(Connection& c, CloseReason reason);
  void kick_slow_consumer(Connection& c);
  void start_linger(Connection& c);
  void destroy(Connection& c);
  void reap();
  void sweep_deadlines();
  void touch(Connection& c);
  void unlist(Connection& c);  // out of every deadline list
  // plumbing
  Connection* find(shm::ConnectionId id) const;
  void send_control(std::uint32_t worker, ipc::RecordType type, const void* header,
                    std::size_t bytes);
  void flush_control();
  void publish_all();
  void arm_doorbell();
  void park(std::chrono::nanoseconds timeout);  // sets parked_handlers_
  /// The socket handlers ready, for at most kHandlerBudget: a pass must end,
  /// and stamp the heartbeat, even while a burst of TLS handshakes (about a
  /// millisecond of CPU each, docs/benchmarks.md) keeps handlers ready.
  std::size_t run_ready_handlers();
  void begin_drain();
  /// Takes the settings a reload published (the limits apply from now on).
  void apply_settings();

  GatewaySegment& segment_;
  Settings settings_;  // as of settings_generation_ (a reload may change them)
  std::uint64_t settings_generation_ = 0;
  const std::uint32_t index_;   // of the settings' frontends
  std::uint32_t capacity_ = 0;  // slots of this frontend's ranges: its connection limit
  metrics::Writer metrics_;
  shm::SlotTable table_;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  shm::Doorbell doorbell_;
  boost::asio::posix::stream_descriptor doorbell_wait_;
  bool doorbell_armed_ = false;
  std::size_t parked_handlers_ = 0;  // handlers the last park ran: the next pass's poll
  boost::asio::steady_timer sweep_timer_;
  // Warnings a client can cause at will: at most one line a second each.
  LogLimit out_of_fds_log_{spdlog::level::warn, "accept failed: out of descriptors or memory"};
  LogLimit accept_failed_log_{spdlog::level::warn, "accept failed"};
  LogLimit per_address_log_{spdlog::level::warn,
                            "connection refused: --max-connections-per-ip reached"};
  LogLimit connection_limit_log_{spdlog::level::warn,
                                 "connection refused: connection limit reached"};
  LogLimit connect_rate_log_{spdlog::level::warn, "connection refused: over a connection rate"};
  LogLimit accept_paced_log_{spdlog::level::warn, "accepting paused: new connections wait"};
  LogLimit prelogin_log_{spdlog::level::warn, "connection closed: over the pre-login budget"};
  // One site per reason, so that a flood of one does not hide the others.
  LogLimit proxy_untrusted_log_{spdlog::level::warn,
                                "connection closed: PROXY header from outside proxy-from"};
  LogLimit proxy_missing_log_{spdlog::level::warn, "connection closed: no PROXY header"};
  LogLimit proxy_malformed_log_{spdlog::level::warn, "connection closed: malformed PROXY header"};
  LogLimit proxy_timeout_log_{spdlog::level::warn,
                              "connection closed: no PROXY header within its deadline"};
  LogLimit kcp_refused_log_{spdlog::level::warn, "KCP session refused"};
  LogLimit handshake_log_{spdlog::level::warn, "connection closed: handshake failed"};
  AddressLimit per_address_;
  ConnectRate connect_rate_;
  std::uint32_t next_worker_ = 0;  // whose turn it is to take a connection
  std::vector<std::unique_ptr<WorkerLink>> workers_;
  std::vector<std::unique_ptr<Connection>> by_slot_;
  // Connections waiting for their PROXY header, by a key their reads carry.
  std::unordered_map<std::uint64_t, std::unique_ptr<Pending>> pending_;
  std::uint64_t next_pending_ = 0;
  std::size_t connection_count_ = 0;
  std::vector<std::byte> scratch_;         // one read's worth, shared by all connections
  std::deque<shm::ConnectionId> blocked_;  // waiting for ring space to forward
  // Send records of the current ring batch, flushed (writev) before commit.
  std::vector<std::pair<Connection*, std::span<const std::byte>>> batch_;
  std::vector<std::size_t> batch_next_;       // next record of the same connection
  std::vector<shm::ConnectionId> graveyard_;  // destroyed, freed by reap()
  // Deadlines (deadline_list.h). Read and linger share a link: a connection
  // is read until its kick, then lingers.
  DeadlineList<Connection> reading_;     // open: a whole frame within read-timeout
  DeadlineList<Connection> lingering_;   // kicked: flushed and FIN within linger
  DeadlineList<Connection> writing_;     // output waiting: a byte taken within write-timeout
  DeadlineList<Connection> logging_in_;  // not logged in: login within login-timeout
  DeadlineList<Pending> proxy_waiting_;  // a PROXY header within its deadline
  // KCP over UDP: the listeners' sockets, the sessions by peer, the sessions
  // whose output to flush after a ring batch, the update timers (a heap of
  // (due, id); an entry whose due is not its session's any more is stale).
  std::vector<std::unique_ptr<UdpListener>> udp_;
  std::vector<std::uint16_t> acceptor_listener_;  // acceptors_[i] serves this --listen
  std::unordered_map<UdpPeer, shm::ConnectionId, UdpPeerHash> kcp_sessions_;
  AddressLimit kcp_per_address_;
  std::size_t kcp_pending_ = 0;  // sessions not logged in yet (udp-pending-sessions)
  std::size_t kcp_open_ = 0;
  std::vector<shm::ConnectionId> kcp_dirty_;
  using KcpTimer = std::pair<std::int64_t, std::uint64_t>;  // (due ms, id)
  std::priority_queue<KcpTimer, std::vector<KcpTimer>, std::greater<>> kcp_timers_;
  boost::asio::steady_timer kcp_tick_;
  bool kcp_ticking_ = false;
  std::int64_t kcp_tick_at_ = 0;     // when the armed tick fires
  std::vector<std::byte> datagram_;  // one datagram received
  // TLS and WebSocket: the context new tls and wss connections take, and
  // the links open by kind (the transport gauges).
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::array<std::size_t, 3> links_open_{};
  volatile std::sig_atomic_t drain_requested_ = 0;
  bool draining_ = false;
};

}  // namespace gatehouse::frontend
