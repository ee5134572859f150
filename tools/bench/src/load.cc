#include "gatehouse/bench/load.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/crypto/gateway_identity.h"
#include "gatehouse/crypto/legacy_crypto.h"
#include "gatehouse/crypto/modern_crypto.h"
#include "gatehouse/kcp/connection.h"
#include "gatehouse/net/edge_socket.h"
#include "gatehouse/net/tls_context.h"

namespace gatehouse::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using asio::ip::udp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

// The demo game's echo (examples/demo-game): 1001 proto_ping_req -> 1002 proto_ping_ack.
constexpr std::int16_t kPingReq = 1001;
constexpr std::int16_t kPingAck = 1002;

// One timer per event loop, not one per connection: the ramp, phase changes
// and (every kSweepEvery ticks) deadlines and heartbeats of all its
// connections. 50k per-connection timers would cost more than the sweep.
constexpr auto kTick = std::chrono::milliseconds(10);
constexpr std::uint64_t kSweepEvery = 10;
// Each connection keeps one receive queued (Asio then waits on the socket's
// edge-triggered registration, with no epoll_ctl per read) into a buffer of
// its own: small while reads are small (an idle connection), wide once one
// fills it.
constexpr std::size_t kNarrowRead = 128;
constexpr std::size_t kWideRead = 4096;
constexpr std::size_t kMaxErrorSamples = 8;

enum class ErrorKind : std::uint8_t { kConnect, kLogin, kClosed, kBadReply, kTimeout };
constexpr std::size_t kErrorKinds = 5;

enum class Phase : int { kRamp, kGo, kStop, kFinish };

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

nanoseconds to_ns(double seconds) {
  return std::chrono::duration_cast<nanoseconds>(std::chrono::duration<double>(seconds));
}

void store_u32(std::byte* p, std::uint32_t v) noexcept {
  store_u16(p, static_cast<std::uint16_t>(v >> 16));
  store_u16(p + 2, static_cast<std::uint16_t>(v & 0xffff));
}
std::uint32_t load_u32(const std::byte* p) noexcept {
  return (std::uint32_t{load_u16(p)} << 16) | load_u16(p + 2);
}

/// Body byte k >= 8 of message `number` on connection `index`: differs
/// between neighbouring connections and messages, so a reply delivered to
/// the wrong connection or out of order fails the byte check even if its
/// first 8 bytes were damaged into plausible values.
std::byte pattern_byte(std::uint32_t index, std::uint32_t number, std::size_t k) noexcept {
  const std::uint32_t v = index * 131u + number * 17u + static_cast<std::uint32_t>(k);
  return static_cast<std::byte>(v & 0xffu);
}

void fill_body(std::byte* body, std::size_t n, std::uint32_t index, std::uint32_t number) {
  store_u32(body, index);
  store_u32(body + 4, number);
  for (std::size_t k = 8; k < n; ++k) body[k] = pattern_byte(index, number, k);
}

// ---------------------------------------------------------------- ciphers

// load.h spells the tag's size out (it includes no common header).
static_assert(kMaxBodyBytes - kMaxModernBodyBytes == modern::kTagBytes);

/// An encrypted session's two directions once its key exchange is answered:
/// what turns a payload into its wire form and back. Allocated only then,
/// and only as large as its kind needs (the bench holds 50k connections).
class SessionCipher {
 public:
  virtual ~SessionCipher() = default;
  /// What sealing adds to a payload.
  virtual std::size_t overhead() const noexcept = 0;
  /// Encrypts the `n`-byte payload at `payload` in place; the overhead()
  /// bytes after it are the room for what sealing adds.
  virtual void seal(std::byte* payload, std::size_t n) = 0;
  /// Decrypts the `n` bytes received at `payload` in place: the plaintext's
  /// size, or nullopt when the payload fails to authenticate.
  virtual std::optional<std::size_t> open(std::byte* payload, std::size_t n) = 0;
};

/// Legacy: RC4 each way, one stream running on across frames (1 KiB each).
class LegacyCipher final : public SessionCipher {
 public:
  LegacyCipher(std::uint32_t send_key, std::uint32_t receive_key) noexcept {
    send_.init(send_key);
    receive_.init(receive_key);
  }
  std::size_t overhead() const noexcept override { return 0; }
  void seal(std::byte* payload, std::size_t n) override { send_.apply(payload, payload, n); }
  std::optional<std::size_t> open(std::byte* payload, std::size_t n) override {
    receive_.apply(payload, payload, n);
    return n;
  }

 private:
  legacy::Rc4State send_;
  legacy::Rc4State receive_;
};

/// Modern: ChaCha20-Poly1305 each way, payloads numbered per direction (40
/// bytes each).
class ModernCipher final : public SessionCipher {
 public:
  ModernCipher(const modern::SessionKeys& keys, modern::Aead aead) noexcept {
    send_.init(keys.to_gateway, aead);
    receive_.init(keys.to_client, aead);
  }
  std::size_t overhead() const noexcept override { return modern::kTagBytes; }
  void seal(std::byte* payload, std::size_t n) override { send_.seal(payload, n, payload); }
  std::optional<std::size_t> open(std::byte* payload, std::size_t n) override {
    if (!receive_.open(payload, n, payload)) return std::nullopt;
    return n - modern::kTagBytes;
  }

 private:
  modern::AeadStream send_;
  modern::AeadStream receive_;
};

// ---------------------------------------------------------------- tls, ws, wss

/// A connection's TCP socket under TLS (Asio's ssl) and/or a WebSocket
/// (Beast), once connected: open() runs the handshake and the upgrade, then
/// the framed stream goes through it. What it reads reaches the owner as
/// that stream: TLS's bytes as they come, a WebSocket message as the frame
/// it stands for (its size written in front: docs/websocket.md); what the
/// owner writes is framed, sent as it is (TLS) or as one message per frame.
/// One read and one write at a time; close() ends both (operation_aborted).
class Layer {
 public:
  struct Events {
    std::function<void(const error_code&)> opened;
    /// `n` bytes of the framed stream at `data`, the layer's until the next read().
    std::function<void(const error_code&, std::byte* data, std::size_t n)> received;
    std::function<void(const error_code&)> written;
  };
  struct Peer {
    std::string host;      ///< the WebSocket upgrade's Host
    std::string tls_name;  ///< what the certificate must be valid for
    bool tls_insecure = false;
  };

  explicit Layer(Events events) : events_(std::move(events)) {}
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;
  virtual ~Layer() = default;

  /// Throws std::runtime_error when OpenSSL refuses the TLS name.
  virtual void open(const Peer& peer) = 0;
  virtual void read() = 0;
  /// `framed` stays untouched until written().
  virtual void write(std::span<const std::byte> framed) = 0;
  virtual void close() noexcept = 0;

 protected:
  Events events_;
};

using TlsStream = asio::ssl::stream<tcp::socket>;

class TlsLayer final : public Layer {
 public:
  TlsLayer(tcp::socket socket, asio::ssl::context& tls, Events events)
      : Layer(std::move(events)), stream_(std::move(socket), tls) {}

  void open(const Peer& peer) override {
    net::check_server_as(stream_.native_handle(), peer.tls_name, peer.tls_insecure);
    stream_.async_handshake(asio::ssl::stream_base::client,
                            [this](const error_code& ec) { events_.opened(ec); });
  }
  void read() override {
    stream_.async_read_some(asio::buffer(rx_), [this](const error_code& ec, std::size_t n) {
      events_.received(ec, rx_.data(), n);
    });
  }
  void write(std::span<const std::byte> framed) override {
    asio::async_write(stream_, asio::buffer(framed.data(), framed.size()),
                      [this](const error_code& ec, std::size_t) { events_.written(ec); });
  }
  void close() noexcept override {
    error_code ignored;
    stream_.next_layer().close(ignored);
  }

 private:
  TlsStream stream_;
  std::array<std::byte, kWideRead> rx_{};
};

/// `Next` is tcp::socket (ws) or TlsStream (wss).
template <class Next>
class WebSocketLayer final : public Layer {
  static constexpr bool kSecure = std::is_same_v<Next, TlsStream>;

 public:
  WebSocketLayer(tcp::socket socket, asio::ssl::context& tls, Events events)
      : Layer(std::move(events)), ws_(make_next(std::move(socket), tls)) {
    ws_.binary(true);
    ws_.read_message_max(protocol::kMaxPayload);
  }

  void open(const Peer& peer) override {
    if constexpr (kSecure) {
      net::check_server_as(ws_.next_layer().native_handle(), peer.tls_name, peer.tls_insecure);
      ws_.next_layer().async_handshake(asio::ssl::stream_base::client,
                                       [this, host = peer.host](const error_code& ec) {
                                         if (ec) {
                                           events_.opened(ec);
                                           return;
                                         }
                                         upgrade(host);
                                       });
    } else {
      upgrade(peer.host);
    }
  }
  void read() override {
    // The frame's size goes in front of the message, where TCP has it.
    rx_.clear();
    rx_.prepare(protocol::kSizeBytes);
    rx_.commit(protocol::kSizeBytes);
    ws_.async_read(rx_, [this](const error_code& ec, std::size_t n) {
      auto* data = static_cast<std::byte*>(rx_.data().data());
      if (!ec) store_u16(data, static_cast<std::uint16_t>(n));
      events_.received(ec, data, rx_.size());
    });
  }
  void write(std::span<const std::byte> framed) override {
    unsent_ = framed;
    write_next();
  }
  void close() noexcept override {
    error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
  }

 private:
  static Next make_next(tcp::socket socket, asio::ssl::context& tls) {
    if constexpr (kSecure) {
      return TlsStream(std::move(socket), tls);
    } else {
      return socket;
    }
  }
  void upgrade(const std::string& host) {
    ws_.async_handshake(host, "/", [this](const error_code& ec) { events_.opened(ec); });
  }
  /// Each frame of `unsent_` as one message, its payload only.
  void write_next() {
    if (unsent_.empty()) {
      events_.written({});
      return;
    }
    const std::size_t n = load_u16(unsent_.data());
    const std::span<const std::byte> payload = unsent_.subspan(protocol::kSizeBytes, n);
    unsent_ = unsent_.subspan(protocol::kSizeBytes + n);
    ws_.async_write(asio::buffer(payload.data(), payload.size()),
                    [this](const error_code& ec, std::size_t) {
                      if (ec) {
                        events_.written(ec);
                        return;
                      }
                      write_next();
                    });
  }

  websocket::stream<Next> ws_;
  beast::flat_buffer rx_;
  std::span<const std::byte> unsent_;
};

std::unique_ptr<Layer> make_layer(Transport transport, tcp::socket socket, asio::ssl::context& tls,
                                  Layer::Events events) {
  switch (transport) {
    case Transport::kTls:
      return std::make_unique<TlsLayer>(std::move(socket), tls, std::move(events));
    case Transport::kWs:
      return std::make_unique<WebSocketLayer<tcp::socket>>(std::move(socket), tls,
                                                           std::move(events));
    case Transport::kWss:
      return std::make_unique<WebSocketLayer<TlsStream>>(std::move(socket), tls, std::move(events));
    case Transport::kTcp:
    case Transport::kKcp:
      break;
  }
  return nullptr;
}

class Load;
class Worker;

// ---------------------------------------------------------------- connection

class Connection {
 public:
  enum class State : std::uint8_t {
    kNotStarted,
    kConnecting,
    kSeeding,     ///< get_seed_req sent, waiting for get_seed_ack
    kExchanging,  ///< key_exchange2_req sent, waiting for key_exchange2_ack
    kLoggingIn,   ///< user_login_req sent, waiting for 11
    kReady,       ///< logged in, waiting for the go
    kRunning,     ///< echo traffic
    kDraining,    ///< stopped sending, waiting for the replies in flight
    kDone,        ///< finished (or idle): held open, heartbeating, until the end
    kClosed,
  };

  Connection(Worker& worker, std::uint32_t index);

  void start(Clock::time_point now);
  void go(Clock::time_point now);
  void stop(Clock::time_point now);
  void sweep(Clock::time_point now);
  /// The end of the run: close without counting anything.
  void close_quietly();

 private:
  bool logged_in() const noexcept { return state_ >= State::kReady && state_ != State::kClosed; }
  void on_connected(const error_code& ec);
  void on_received(const error_code& ec, std::size_t n);
  /// The byte stream from a transport: frames, replies, then more traffic.
  void on_stream(std::byte* data, std::size_t n);
  void arm_read();
  void arm_write();
  /// Parses and handles every complete frame in `data`; the bytes used, or
  /// nullopt when the connection failed.
  std::optional<std::size_t> parse(std::byte* data, std::size_t n, Clock::time_point now);
  bool consume(std::byte* data, std::size_t n, Clock::time_point now);
  bool handle(std::span<const std::byte> payload, Clock::time_point now);
  bool on_echo_reply(std::span<const std::byte> body, Clock::time_point now);
  /// The key exchange is answered: `cipher` protects everything from here on.
  bool on_key_exchange(std::unique_ptr<SessionCipher> cipher, Clock::time_point now);
  void on_logged_in(Clock::time_point now);
  /// Queues frames that are due (echo messages within the window) and writes.
  void pump(Clock::time_point now);
  std::byte* begin_frame(std::int16_t proto, std::size_t body_bytes);
  void end_frame();
  void send_heartbeat(Clock::time_point now);
  void send_login();
  /// Writes what is queued without blocking; the rest waits for writability.
  void flush();
  /// Counts the error, closes; always false (so handlers can `return fail(..)`).
  bool fail(ErrorKind kind, const std::string& what);
  void mark_done(Clock::time_point now);
  ErrorKind disconnect_kind() const noexcept {
    if (state_ == State::kConnecting) return ErrorKind::kConnect;
    return logged_in() ? ErrorKind::kClosed : ErrorKind::kLogin;
  }

  // KCP (--transport kcp): a connected UDP socket and one conversation,
  // its update() on a timer at check(), replies delivered as the TCP
  // path's reads are.
  struct Kcp;
  void start_kcp();
  void arm_datagram();
  void on_datagram(const error_code& ec, std::size_t n);
  void arm_kcp_timer();
  /// Moves what the conversation has delivered through on_stream().
  void deliver_kcp();
  void close_sockets();

  // TLS, WebSocket (--transport tls|ws|wss): the TCP socket goes into the
  // layer once connected; the layer's open completes the connect.
  void open_layer();
  void on_layer_received(const error_code& ec, std::byte* data, std::size_t n);
  void on_layer_written(const error_code& ec);

  Worker& worker_;
  const LoadOptions& options_;
  const std::uint32_t index_;
  net::EdgeSocket socket_;
  std::unique_ptr<Kcp> kcp_;
  std::unique_ptr<Layer> layer_;
  std::vector<std::byte> tx_layer_;  ///< what the layer is writing (tx_ fills meanwhile)
  bool layer_writing_ = false;
  State state_ = State::kNotStarted;
  Clock::time_point state_since_;  ///< handshake deadlines count from here
  bool settled_ = false;           ///< counted in Load::settled
  bool done_ = false;              ///< counted in Load::done
  bool read_armed_ = false;
  bool write_armed_ = false;

  std::uint32_t frames_sent_ = 0;              ///< the seq of the last frame sent
  std::uint64_t send_secret_ = 0;              ///< legacy, for get_seed_ack
  std::uint64_t receive_secret_ = 0;           ///< legacy, for get_seed_ack
  std::unique_ptr<modern::KeyPair> key_pair_;  ///< modern, until key_exchange2_ack
  std::unique_ptr<SessionCipher> cipher_;      ///< once the key exchange is answered

  std::vector<std::byte> tx_;  ///< framed (and encrypted) bytes not yet written
  std::size_t tx_written_ = 0;
  std::vector<std::byte> rx_;          ///< the queued receive's buffer
  std::vector<std::byte> rx_partial_;  ///< the start of a frame not yet complete
  std::size_t frame_start_ = 0;        ///< begin_frame() .. end_frame()

  std::uint64_t sent_ = 0;                  ///< echo messages sent; the next one's number
  std::uint64_t acked_ = 0;                 ///< verified replies; the next expected number
  std::vector<Clock::time_point> sent_at_;  ///< by message number % window
  Clock::time_point last_send_;
  std::int32_t heartbeat_id_ = 0;  ///< of the last heartbeat sent
  bool heartbeat_outstanding_ = false;
  Clock::time_point heartbeat_sent_at_;
};

namespace kcp_clock {
kcp::Millis now_ms(Clock::time_point t) noexcept {
  return static_cast<kcp::Millis>(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}
}  // namespace kcp_clock

/// kcp-go's largest datagram is 1500 bytes; one more tells truncation apart.
constexpr std::size_t kDatagramBuffer = 1501;
/// The client's update period (the gateway's is its `interval` setting).
constexpr kcp::Millis kKcpInterval = 10;
constexpr std::uint32_t kKcpWindow = 128;

struct Connection::Kcp {
  Kcp(asio::io_context& io, std::uint32_t conv)
      : socket(io), timer(io), connection(conv, options(), [this](std::span<const std::byte> d) {
          error_code ignored;  // a lost datagram: KCP resends it
          socket.send(asio::buffer(d.data(), d.size()), 0, ignored);
        }) {}
  static kcp::Options options() {
    kcp::Options o;  // gonet2's: nodelay, resend 1, no congestion window, mtu 1280
    o.interval = kKcpInterval;
    o.send_window = kKcpWindow;
    o.receive_window = kKcpWindow;
    return o;
  }
  udp::socket socket;
  asio::steady_timer timer;
  kcp::Connection connection;
  std::array<std::byte, kDatagramBuffer> datagram{};
  bool datagram_armed = false;
};

// ---------------------------------------------------------------- worker

/// One event loop and the connections on it.
class Worker {
 public:
  Worker(Load& load, std::uint32_t id);

  void add_connection(std::uint32_t index) {
    connections_.push_back(std::make_unique<Connection>(*this, index));
  }
  void run();

  Load& load() noexcept { return load_; }
  asio::io_context& io() noexcept { return io_; }

  void record_latency(nanoseconds latency) {
    const auto us = std::max<std::int64_t>(0, (latency.count() + 500) / 1000);
    latency_us_.record(static_cast<std::uint64_t>(us));
    bump(messages_);
  }
  void count_error(ErrorKind kind, std::uint32_t index, const std::string& what) {
    bump(errors_[static_cast<std::size_t>(kind)]);
    if (error_samples_.size() < kMaxErrorSamples) {
      error_samples_.push_back("connection " + std::to_string(index) + ": " + what);
    }
  }

  // Read by the controller's progress line from another thread: single
  // writer, so a relaxed load and store is enough (no locked add per message).
  std::uint64_t messages() const noexcept { return messages_.load(std::memory_order_relaxed); }
  std::uint64_t errors(ErrorKind kind) const noexcept {
    return errors_[static_cast<std::size_t>(kind)].load(std::memory_order_relaxed);
  }
  const LatencyHistogram& latency_us() const noexcept { return latency_us_; }
  const std::vector<std::string>& error_samples() const noexcept { return error_samples_; }

 private:
  static void bump(std::atomic<std::uint64_t>& counter) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void arm_tick();
  void on_tick();

  Load& load_;
  const std::uint32_t id_;
  asio::io_context io_{1};
  asio::steady_timer tick_{io_};
  std::vector<std::unique_ptr<Connection>> connections_;
  std::size_t launched_ = 0;
  std::uint64_t ticks_ = 0;
  bool went_ = false;
  bool stopped_ = false;
  LatencyHistogram latency_us_;
  std::atomic<std::uint64_t> messages_{0};
  std::array<std::atomic<std::uint64_t>, kErrorKinds> errors_{};
  std::vector<std::string> error_samples_;
};

// ---------------------------------------------------------------- the run

/// What the workers share, and the controller (run on worker 0's loop) that
/// moves the phases along.
class Load {
 public:
  Load(const LoadOptions& options, const GatewayProbe& probe, std::ostream& progress_out);

  LoadResult run();

  const LoadOptions& options() const noexcept { return options_; }
  const tcp::endpoint& target() const noexcept { return target_; }
  /// tls, wss: shared by every connection (OpenSSL's contexts are thread-safe once set up).
  asio::ssl::context& tls() noexcept { return *tls_; }
  const std::vector<asio::ip::address>& sources() const noexcept { return sources_; }
  Clock::time_point start() const noexcept { return start_; }
  nanoseconds timeout() const noexcept { return timeout_; }
  nanoseconds heartbeat() const noexcept { return heartbeat_; }
  Phase phase() const noexcept { return phase_.load(std::memory_order_acquire); }

  void on_settled() noexcept { settled_.fetch_add(1, std::memory_order_relaxed); }
  void on_up() noexcept {
    const auto now_up = up_.fetch_add(1, std::memory_order_relaxed) + 1;
    auto peak = peak_up_.load(std::memory_order_relaxed);
    while (now_up > peak && !peak_up_.compare_exchange_weak(peak, now_up)) {
    }
  }
  void on_down() noexcept { up_.fetch_sub(1, std::memory_order_relaxed); }
  void on_closed() noexcept { closed_.fetch_add(1, std::memory_order_relaxed); }
  void on_done(Clock::time_point now) noexcept {
    const auto ns = now.time_since_epoch().count();
    auto last = last_done_ns_.load(std::memory_order_relaxed);
    while (ns > last && !last_done_ns_.compare_exchange_weak(last, ns)) {
    }
    done_.fetch_add(1, std::memory_order_release);
  }

  /// Worker 0 calls this every tick.
  void control(Clock::time_point now);

 private:
  void print_progress(Clock::time_point now);
  std::uint64_t total_messages() const;
  std::uint64_t total_errors() const;

  const LoadOptions& options_;
  const GatewayProbe& probe_;
  std::ostream& progress_out_;
  tcp::endpoint target_;
  std::optional<asio::ssl::context> tls_;
  std::vector<asio::ip::address> sources_;
  nanoseconds timeout_;
  nanoseconds heartbeat_;
  nanoseconds duration_;
  std::vector<std::unique_ptr<Worker>> workers_;

  Clock::time_point start_;
  std::atomic<Phase> phase_{Phase::kRamp};
  std::atomic<std::uint32_t> settled_{0};  ///< logged in or failed
  std::atomic<std::uint32_t> done_{0};     ///< finished its traffic or failed
  std::atomic<std::uint32_t> closed_{0};   ///< failed
  std::atomic<std::uint32_t> up_{0};       ///< logged in and open
  std::atomic<std::uint32_t> peak_up_{0};
  std::atomic<Clock::rep> last_done_ns_{0};

  // The controller's own (worker 0's thread; read by run() after the join).
  Clock::time_point go_at_;
  Clock::time_point stop_at_;
  Clock::time_point end_at_;
  std::optional<MemorySample> memory_held_;
  std::uint32_t held_up_ = 0;
  struct CpuSample {
    std::uint64_t gateway_us = 0;
    std::uint64_t bench_us = 0;
  };
  CpuSample cpu_now() const;
  CpuSample cpu_at_start_;
  CpuSample cpu_at_go_;
  CpuSample cpu_at_end_;
  Clock::time_point next_progress_;
  std::uint64_t last_progress_messages_ = 0;
};

// ---------------------------------------------------------------- Connection

Connection::Connection(Worker& worker, std::uint32_t index)
    : worker_(worker),
      options_(worker.load().options()),
      index_(index),
      socket_(worker.io()),
      sent_at_(options_.idle ? 0 : options_.window) {}

void Connection::start(Clock::time_point now) {
  state_ = State::kConnecting;
  state_since_ = now;
  if (options_.transport == Transport::kKcp) {
    start_kcp();
    return;
  }
  const Load& load = worker_.load();
  error_code ec;
  socket_.open(load.target().protocol(), ec);
  if (ec) {
    fail(ErrorKind::kConnect, "socket: " + ec.message());
    return;
  }
  if (!load.sources().empty()) {
    // Let connect() pick the port for the full 4-tuple, not bind(): otherwise
    // every source address is limited to one connection per local port across
    // all destinations.
    const int one = 1;
    ::setsockopt(socket_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    const auto& source = load.sources()[index_ % load.sources().size()];
    socket_.bind(tcp::endpoint(source, 0), ec);
    if (ec) {
      fail(ErrorKind::kConnect, "bind " + source.to_string() + ": " + ec.message());
      return;
    }
  }
  socket_.non_blocking(true, ec);
  if (ec) {
    fail(ErrorKind::kConnect, "non_blocking: " + ec.message());
    return;
  }
  socket_.async_connect(load.target(), [this](const error_code& e) {
    if (e || options_.transport == Transport::kTcp) {
      on_connected(e);
    } else {
      open_layer();
    }
  });
}

void Connection::open_layer() {
  if (state_ != State::kConnecting) return;  // timed out and closed meanwhile
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  Load& load = worker_.load();
  layer_ = make_layer(options_.transport, std::move(socket_), load.tls(),
                      {.opened = [this](const error_code& ec) { on_connected(ec); },
                       .received = [this](const error_code& ec, std::byte* data,
                                          std::size_t n) { on_layer_received(ec, data, n); },
                       .written = [this](const error_code& ec) { on_layer_written(ec); }});
  try {
    layer_->open({.host = options_.host + ":" + std::to_string(options_.port),
                  .tls_name = options_.tls_name.empty() ? options_.host : options_.tls_name,
                  .tls_insecure = options_.tls_insecure});
  } catch (const std::runtime_error& e) {
    fail(ErrorKind::kConnect, e.what());
  }
}

void Connection::on_layer_received(const error_code& ec, std::byte* data, std::size_t n) {
  read_armed_ = false;
  if (state_ == State::kClosed) return;
  if (ec) {
    const bool ended = ec == asio::error::eof || ec == websocket::error::closed ||
                       ec == asio::ssl::error::stream_truncated;
    fail(disconnect_kind(), ended ? std::string("closed by the gateway") : "read: " + ec.message());
    return;
  }
  on_stream(data, n);
  if (state_ != State::kClosed) arm_read();
}

void Connection::on_layer_written(const error_code& ec) {
  layer_writing_ = false;
  tx_layer_.clear();
  if (state_ == State::kClosed) return;
  if (ec) {
    fail(disconnect_kind(), "write: " + ec.message());
    return;
  }
  flush();  // what queued up meanwhile
}

void Connection::start_kcp() {
  thread_local std::mt19937 random{std::random_device{}()};
  std::uint32_t conv = 0;
  while (conv == 0) conv = static_cast<std::uint32_t>(random());
  kcp_ = std::make_unique<Kcp>(worker_.io(), conv);
  const tcp::endpoint& target = worker_.load().target();
  const udp::endpoint peer(target.address(), target.port());
  error_code ec;
  kcp_->socket.open(peer.protocol(), ec);
  if (!ec && !worker_.load().sources().empty()) {
    const auto& source = worker_.load().sources()[index_ % worker_.load().sources().size()];
    kcp_->socket.bind(udp::endpoint(source, 0), ec);
  }
  // connect() only fixes the peer: nothing is sent before the first write.
  if (!ec) kcp_->socket.connect(peer, ec);
  if (!ec) kcp_->socket.non_blocking(true, ec);
  if (ec) {
    fail(ErrorKind::kConnect, "udp socket: " + ec.message());
    return;
  }
  arm_datagram();
  arm_kcp_timer();
  on_connected({});
}

void Connection::arm_datagram() {
  if (kcp_->datagram_armed) return;
  kcp_->datagram_armed = true;
  kcp_->socket.async_receive(asio::buffer(kcp_->datagram),
                             [this](const error_code& ec, std::size_t n) { on_datagram(ec, n); });
}

void Connection::on_datagram(const error_code& ec, std::size_t n) {
  kcp_->datagram_armed = false;
  if (state_ == State::kClosed) return;
  if (ec) {  // ECONNREFUSED: ICMP port unreachable
    fail(disconnect_kind(), "udp receive: " + ec.message());
    return;
  }
  const auto now = Clock::now();
  kcp_->connection.input({kcp_->datagram.data(), n}, kcp_clock::now_ms(now));
  // Take the rest of what is queued before handling, so a burst of
  // datagrams is one delivery.
  for (;;) {
    error_code again;
    const std::size_t more = kcp_->socket.receive(asio::buffer(kcp_->datagram), 0, again);
    if (again) break;
    kcp_->connection.input({kcp_->datagram.data(), more}, kcp_clock::now_ms(Clock::now()));
  }
  deliver_kcp();
  if (state_ != State::kClosed) arm_datagram();
}

void Connection::deliver_kcp() {
  if (rx_.size() < kWideRead) rx_.resize(kWideRead);
  while (state_ != State::kClosed && kcp_->connection.readable() > 0) {
    const std::size_t n = kcp_->connection.receive(rx_);
    on_stream(rx_.data(), n);
  }
  // Acks opened the window: what waited for room goes now.
  if (state_ != State::kClosed) flush();
}

void Connection::arm_kcp_timer() {
  const kcp::Millis now = kcp_clock::now_ms(Clock::now());
  const auto due = static_cast<std::int32_t>(kcp_->connection.check(now) - now);  // wrapping
  kcp_->timer.expires_after(std::chrono::milliseconds(std::max(due, 0)));
  kcp_->timer.async_wait([this](const error_code& ec) {
    if (ec || state_ == State::kClosed) return;
    kcp_->connection.update(kcp_clock::now_ms(Clock::now()));
    if (kcp_->connection.dead()) {
      fail(disconnect_kind(), "kcp: the gateway stopped acknowledging (dead link)");
      return;
    }
    flush();
    if (state_ != State::kClosed) arm_kcp_timer();
  });
}

void Connection::close_sockets() {
  error_code ignored;
  socket_.close(ignored);
  if (layer_) layer_->close();
  if (kcp_) {
    kcp_->socket.close(ignored);
    kcp_->timer.cancel();
  }
}

void Connection::on_connected(const error_code& ec) {
  if (state_ != State::kConnecting) return;  // timed out and closed meanwhile
  if (ec) {
    const std::string step =
        layer_ ? std::string(transport_name(options_.transport)) + " handshake" : "connect";
    fail(ErrorKind::kConnect, step + ": " + ec.message());
    return;
  }
  if (!layer_) {
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
  }
  const auto now = Clock::now();
  state_since_ = now;
  arm_read();
  switch (options_.crypto) {
    case Crypto::kClear:
      send_login();
      state_ = State::kLoggingIn;
      break;
    case Crypto::kLegacy: {
      send_secret_ = legacy::dh_random_secret();
      receive_secret_ = legacy::dh_random_secret();
      std::byte* body = begin_frame(protocol::kGetSeedReq, 8);
      store_u32(body, legacy::dh_public(send_secret_));
      store_u32(body + 4, legacy::dh_public(receive_secret_));
      end_frame();
      state_ = State::kSeeding;
      break;
    }
    case Crypto::kModern: {
      key_pair_ = std::make_unique<modern::KeyPair>(modern::generate_key_pair());
      std::vector<std::byte> request;
      protocol::encode_key_exchange2_req(
          {key_pair_->public_key, modern::key_id_of(options_.gateway_key), options_.aead}, request);
      std::byte* body = begin_frame(protocol::kKeyExchange2Req, request.size());
      std::memcpy(body, request.data(), request.size());
      end_frame();
      state_ = State::kExchanging;
      break;
    }
  }
  last_send_ = now;
  flush();
}

void Connection::send_login() {
  const std::string udid = options_.udid_prefix + std::to_string(index_);
  protocol::LoginRequest r;
  r.login_way = 0;
  r.open_udid = udid;
  // The token, should the gateway use a token table or signed tokens.
  r.client_certificate = index_ < options_.tokens.size() ? options_.tokens[index_] : udid;
  r.client_version = 1;
  r.user_lang = "en";
  r.app_id = "gatehouse-bench";
  r.os_version = "linux";
  r.device_name = "gatehouse-bench";
  r.device_id = udid;
  r.device_id_type = 0;
  r.login_ip = "127.0.0.1";
  std::vector<std::byte> body;
  protocol::encode_login(r, body);
  std::byte* out = begin_frame(protocol::kUserLoginReq, body.size());
  std::copy(body.begin(), body.end(), out);
  end_frame();
}

void Connection::arm_read() {
  if (read_armed_ || kcp_) return;  // KCP: datagrams are always awaited
  read_armed_ = true;
  if (layer_) {
    layer_->read();
    return;
  }
  if (rx_.empty()) rx_.resize(kNarrowRead);
  socket_.async_receive_edge(asio::buffer(rx_),
                             [this](const error_code& ec, std::size_t n) { on_received(ec, n); });
}

void Connection::arm_write() {
  if (write_armed_) return;
  write_armed_ = true;
  socket_.async_wait(tcp::socket::wait_write, [this](const error_code& ec) {
    write_armed_ = false;
    if (state_ == State::kClosed) return;
    if (ec) {
      fail(disconnect_kind(), "wait for writable: " + ec.message());
      return;
    }
    flush();
  });
}

void Connection::on_received(const error_code& ec, std::size_t n) {
  read_armed_ = false;
  if (state_ == State::kClosed) return;
  if (ec) {
    fail(disconnect_kind(),
         ec == asio::error::eof ? std::string("closed by the gateway") : "read: " + ec.message());
    return;
  }
  on_stream(rx_.data(), n);
  if (n == rx_.size() && rx_.size() < kWideRead) rx_.resize(kWideRead);
  // What is still queued is read at once: a full buffer leaves Asio trying
  // the next receive before it waits.
  if (state_ != State::kClosed) arm_read();
}

void Connection::on_stream(std::byte* data, std::size_t n) {
  const auto now = Clock::now();
  if (!consume(data, n, now)) return;
  pump(now);
}

bool Connection::consume(std::byte* data, std::size_t n, Clock::time_point now) {
  if (rx_partial_.empty()) {
    const auto used = parse(data, n, now);
    if (!used) return false;
    if (*used < n) rx_partial_.assign(data + *used, data + n);
    return true;
  }
  rx_partial_.insert(rx_partial_.end(), data, data + n);
  const auto used = parse(rx_partial_.data(), rx_partial_.size(), now);
  if (!used) return false;
  rx_partial_.erase(rx_partial_.begin(), rx_partial_.begin() + static_cast<std::ptrdiff_t>(*used));
  return true;
}

std::optional<std::size_t> Connection::parse(std::byte* data, std::size_t n,
                                             Clock::time_point now) {
  std::size_t used = 0;
  for (;;) {
    const auto scan = protocol::scan_frame(std::span<const std::byte>(data + used, n - used),
                                           protocol::kMaxPayload);
    if (scan.kind != protocol::FrameScan::kFrame) return used;  // kTooLarge: impossible (u16)
    std::byte* payload = data + used + protocol::kSizeBytes;
    std::size_t payload_bytes = scan.payload_bytes;
    used += protocol::kSizeBytes + scan.payload_bytes;
    // Decrypt only once the frame is complete: a partial frame is kept
    // encrypted, so the RC4 stream advances exactly once over every byte and
    // a sealed payload is opened whole. The cipher is checked per frame
    // because the key exchange's answer (clear) switches it on for the
    // frames behind it.
    if (cipher_) {
      const auto opened = cipher_->open(payload, payload_bytes);
      if (!opened) {
        fail(logged_in() ? ErrorKind::kBadReply : ErrorKind::kLogin,
             "a frame of " + std::to_string(payload_bytes) +
                 " bytes failed to open (decrypt_failed: tampered, reordered or wrong key)");
        return std::nullopt;
      }
      payload_bytes = *opened;
    }
    if (!handle({payload, payload_bytes}, now)) return std::nullopt;
  }
}

bool Connection::handle(std::span<const std::byte> payload, Clock::time_point now) {
  const auto packet = protocol::parse_server_payload(payload);
  if (!packet) {
    return fail(logged_in() ? ErrorKind::kBadReply : ErrorKind::kLogin,
                "malformed frame of " + std::to_string(payload.size()) + " bytes");
  }
  const auto proto = [&packet] { return std::to_string(packet->proto); };  // errors only
  switch (state_) {
    case State::kSeeding: {
      if (packet->proto != protocol::kGetSeedAck) {
        return fail(ErrorKind::kLogin, "expected get_seed_ack (31), got proto " + proto());
      }
      const auto seeds = protocol::parse_seed(packet->body);
      if (!seeds) return fail(ErrorKind::kLogin, "malformed get_seed_ack");
      return on_key_exchange(
          std::make_unique<LegacyCipher>(legacy::dh_power(seeds->send_seed, send_secret_),
                                         legacy::dh_power(seeds->receive_seed, receive_secret_)),
          now);
    }
    case State::kExchanging: {
      if (packet->proto != protocol::kKeyExchange2Ack) {
        return fail(ErrorKind::kLogin, "expected key_exchange2_ack (35), got proto " + proto());
      }
      const auto ack = protocol::parse_key_exchange2_ack(packet->body);
      if (!ack) return fail(ErrorKind::kLogin, "malformed key_exchange2_ack");
      const auto result = modern::client_finish(*key_pair_, options_.gateway_key, options_.aead,
                                                ack->key, ack->aead, ack->confirm);
      key_pair_.reset();
      if (!result.keys) {
        return fail(ErrorKind::kLogin,
                    "key_exchange2_ack refused: " + std::string(modern::describe(result.check)));
      }
      return on_key_exchange(std::make_unique<ModernCipher>(*result.keys, result.aead), now);
    }
    case State::kLoggingIn:
      if (packet->proto == protocol::kUserLoginSucceedAck) {
        on_logged_in(now);
        return true;
      }
      if (packet->proto == protocol::kUserLoginFaildAck) {
        return fail(ErrorKind::kLogin, "login refused (user_login_faild_ack)");
      }
      return fail(ErrorKind::kLogin, "expected user_login_succeed_ack (11), got proto " + proto());
    case State::kReady:
    case State::kRunning:
    case State::kDraining:
    case State::kDone:
      if (packet->proto == kPingAck) return on_echo_reply(packet->body, now);
      if (packet->proto == protocol::kHeartBeatAck) {
        const auto id = protocol::parse_heartbeat(packet->body);
        if (!heartbeat_outstanding_ || !id || *id != heartbeat_id_) {
          return fail(ErrorKind::kBadReply, "unexpected heart_beat_ack");
        }
        heartbeat_outstanding_ = false;
        return true;
      }
      return fail(ErrorKind::kBadReply, "unexpected proto " + proto());
    case State::kNotStarted:
    case State::kConnecting:
    case State::kClosed:
      break;
  }
  return fail(ErrorKind::kBadReply, "unexpected proto " + proto());
}

bool Connection::on_echo_reply(std::span<const std::byte> body, Clock::time_point now) {
  const auto expected = static_cast<std::uint32_t>(acked_);
  const auto names = [&body] {
    if (body.size() < 8) return std::to_string(body.size()) + " bytes";
    return "(connection " + std::to_string(load_u32(body.data())) + ", message " +
           std::to_string(load_u32(body.data() + 4)) + ")";
  };
  if (acked_ == sent_) {
    return fail(ErrorKind::kBadReply, "reply " + names() + " with nothing in flight");
  }
  if (body.size() != options_.body_bytes) {
    return fail(ErrorKind::kBadReply, "reply to message " + std::to_string(expected) + " has " +
                                          std::to_string(body.size()) + " bytes, sent " +
                                          std::to_string(options_.body_bytes));
  }
  if (load_u32(body.data()) != index_ || load_u32(body.data() + 4) != expected) {
    return fail(ErrorKind::kBadReply,
                "reply " + names() + ", expected message " + std::to_string(expected));
  }
  for (std::size_t k = 8; k < body.size(); ++k) {
    if (body[k] != pattern_byte(index_, expected, k)) {
      return fail(ErrorKind::kBadReply, "reply to message " + std::to_string(expected) +
                                            " differs at byte " + std::to_string(k));
    }
  }
  worker_.record_latency(now - sent_at_[acked_ % options_.window]);
  ++acked_;
  const bool all_asked_for =
      state_ == State::kRunning && options_.messages != 0 && acked_ == options_.messages;
  const bool all_in_flight_back = state_ == State::kDraining && acked_ == sent_;
  if (all_asked_for || all_in_flight_back) mark_done(now);
  return true;
}

bool Connection::on_key_exchange(std::unique_ptr<SessionCipher> cipher, Clock::time_point now) {
  cipher_ = std::move(cipher);
  send_login();
  state_ = State::kLoggingIn;
  state_since_ = now;
  last_send_ = now;
  return true;
}

void Connection::on_logged_in(Clock::time_point now) {
  state_ = State::kReady;
  state_since_ = now;
  settled_ = true;
  Load& load = worker_.load();
  load.on_settled();
  load.on_up();
  // The go waits for every connection to settle, so this is only a guard: a
  // worker moves its kReady connections once, when it first sees the go.
  if (load.phase() >= Phase::kGo) go(now);
}

void Connection::go(Clock::time_point now) {
  if (state_ != State::kReady) return;
  if (options_.idle) {
    mark_done(now);
    return;
  }
  state_ = State::kRunning;
  pump(now);
}

void Connection::stop(Clock::time_point now) {
  if (state_ != State::kRunning) return;
  state_ = State::kDraining;
  if (acked_ == sent_) mark_done(now);
}

void Connection::pump(Clock::time_point now) {
  if (state_ == State::kRunning) {
    const std::uint64_t limit =
        options_.messages != 0 ? options_.messages : std::numeric_limits<std::uint64_t>::max();
    bool sent_any = false;
    // Every due message goes into tx_ before one write: with a window > 1 the
    // replies of one read free several slots, refilled with one send.
    while (sent_ - acked_ < options_.window && sent_ < limit) {
      std::byte* body = begin_frame(kPingReq, options_.body_bytes);
      fill_body(body, options_.body_bytes, index_, static_cast<std::uint32_t>(sent_));
      end_frame();
      sent_at_[sent_ % options_.window] = now;
      ++sent_;
      sent_any = true;
    }
    if (sent_any) last_send_ = now;
  }
  flush();
}

std::byte* Connection::begin_frame(std::int16_t proto, std::size_t body_bytes) {
  frame_start_ = tx_.size();
  // The size header counts the payload as sent: with what sealing adds.
  const std::size_t wire_payload =
      protocol::kClientHeaderBytes + body_bytes + (cipher_ ? cipher_->overhead() : 0);
  tx_.resize(frame_start_ + protocol::kSizeBytes + wire_payload);
  std::byte* p = tx_.data() + frame_start_;
  store_u16(p, static_cast<std::uint16_t>(wire_payload));
  store_u32(p + 2, ++frames_sent_);  // seq: frames sent so far, this one included
  store_i16(p + 6, proto);
  return p + protocol::kSizeBytes + protocol::kClientHeaderBytes;
}

void Connection::end_frame() {
  if (!cipher_) return;
  // The payload only, never the size header; the ciphers run on across frames.
  std::byte* payload = tx_.data() + frame_start_ + protocol::kSizeBytes;
  cipher_->seal(payload, tx_.size() - frame_start_ - protocol::kSizeBytes - cipher_->overhead());
}

void Connection::send_heartbeat(Clock::time_point now) {
  std::byte* body = begin_frame(protocol::kHeartBeatReq, 4);
  store_u32(body, static_cast<std::uint32_t>(++heartbeat_id_));
  end_frame();
  heartbeat_outstanding_ = true;
  heartbeat_sent_at_ = now;
  last_send_ = now;
}

void Connection::flush() {
  if (layer_) {
    if (layer_writing_ || tx_.empty()) return;
    layer_writing_ = true;
    tx_layer_.swap(tx_);
    layer_->write(tx_layer_);
    return;
  }
  if (kcp_) {
    // All or nothing per send(): what does not fit waits for acks (the
    // next datagram or timer calls flush() again).
    const std::size_t n = std::min(tx_.size() - tx_written_, kcp_->connection.send_capacity());
    if (n > 0) {
      kcp_->connection.send({tx_.data() + tx_written_, n});
      tx_written_ += n;
      // As kcp-go, send at once rather than at the next interval.
      kcp_->connection.flush(kcp_clock::now_ms(Clock::now()));
    }
    if (tx_written_ < tx_.size()) return;
    tx_.clear();
    tx_written_ = 0;
    return;
  }
  while (tx_written_ < tx_.size()) {
    error_code ec;
    const std::size_t n =
        socket_.write_some(asio::buffer(tx_.data() + tx_written_, tx_.size() - tx_written_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      arm_write();
      return;
    }
    if (ec) {
      fail(disconnect_kind(), "write: " + ec.message());
      return;
    }
    tx_written_ += n;
  }
  tx_.clear();
  tx_written_ = 0;
}

void Connection::sweep(Clock::time_point now) {
  const auto timeout = worker_.load().timeout();
  switch (state_) {
    case State::kConnecting:
      if (now - state_since_ > timeout) fail(ErrorKind::kConnect, "connect timed out");
      return;
    case State::kSeeding:
    case State::kExchanging:
    case State::kLoggingIn:
      if (now - state_since_ > timeout) {
        const char* awaited = state_ == State::kSeeding      ? "get_seed_ack"
                              : state_ == State::kExchanging ? "key_exchange_ack"
                                                             : "login reply";
        fail(ErrorKind::kLogin, std::string("no ") + awaited + " in time");
      }
      return;
    case State::kRunning:
    case State::kDraining:
      if (acked_ < sent_ && now - sent_at_[acked_ % options_.window] > timeout) {
        fail(ErrorKind::kTimeout, "no reply to message " + std::to_string(acked_) + " in time");
        return;
      }
      [[fallthrough]];
    case State::kReady:
    case State::kDone:
      if (heartbeat_outstanding_) {
        if (now - heartbeat_sent_at_ > timeout) {
          fail(ErrorKind::kTimeout, "no heart_beat_ack in time");
        }
        return;
      }
      // Without traffic the gateway's read deadline (15 s) would close us.
      if (now - last_send_ >= worker_.load().heartbeat()) {
        send_heartbeat(now);
        flush();
      }
      return;
    case State::kNotStarted:
    case State::kClosed:
      return;
  }
}

bool Connection::fail(ErrorKind kind, const std::string& what) {
  if (state_ == State::kClosed) return false;
  const bool was_up = logged_in();
  worker_.count_error(kind, index_, what);
  state_ = State::kClosed;
  close_sockets();
  Load& load = worker_.load();
  if (!settled_) {
    settled_ = true;
    load.on_settled();
  }
  if (was_up) load.on_down();
  load.on_closed();
  if (!done_) {
    done_ = true;
    load.on_done(Clock::now());
  }
  return false;
}

void Connection::mark_done(Clock::time_point now) {
  state_ = State::kDone;
  if (!done_) {
    done_ = true;
    worker_.load().on_done(now);
  }
}

void Connection::close_quietly() {
  state_ = State::kClosed;
  close_sockets();
}

// ---------------------------------------------------------------- Worker

Worker::Worker(Load& load, std::uint32_t id) : load_(load), id_(id) {}

void Worker::run() {
  tick_.expires_at(load_.start());
  arm_tick();
  io_.run();
}

void Worker::arm_tick() {
  tick_.async_wait([this](const error_code& ec) {
    if (!ec) on_tick();
  });
}

void Worker::on_tick() {
  const auto now = Clock::now();
  const LoadOptions& options = load_.options();

  if (launched_ < connections_.size()) {
    // This loop's share of the rate; +1 starts the first one at once.
    const double rate = options.connect_rate / options.threads;
    const double due = seconds_between(load_.start(), now) * rate + 1;
    const auto target =
        static_cast<std::size_t>(std::min(due, static_cast<double>(connections_.size())));
    // What is due, for at most a tick's time: on a saturated machine one
    // connect costs milliseconds (on loopback it runs the whole handshake),
    // and a loop catching up thousands at once went seconds without a
    // sweep, so the connections already up sent no heartbeat and the
    // gateway's read deadline closed them.
    const auto budget_end = Clock::now() + kTick;
    while (launched_ < target && Clock::now() < budget_end) {
      connections_[launched_++]->start(now);
    }
  }

  // Phases are polled, not posted: a loop that misses kGo between two ticks
  // sees kStop and still runs go() before stop().
  const Phase phase = load_.phase();
  if (phase >= Phase::kGo && !went_) {
    went_ = true;
    for (auto& c : connections_) c->go(now);
  }
  if (phase >= Phase::kStop && !stopped_) {
    stopped_ = true;
    for (auto& c : connections_) c->stop(now);
  }
  if (phase == Phase::kFinish) {
    for (auto& c : connections_) c->close_quietly();
    return;  // no more ticks: the loop runs out of work and run() returns
  }

  if (++ticks_ % kSweepEvery == 0) {
    for (std::size_t i = 0; i < launched_; ++i) connections_[i]->sweep(now);
  }
  if (id_ == 0) load_.control(now);

  // From the previous expiry, not from now, so the ramp does not drift.
  tick_.expires_at(std::max(tick_.expiry() + kTick, now));
  arm_tick();
}

// ---------------------------------------------------------------- Load

Load::Load(const LoadOptions& options, const GatewayProbe& probe, std::ostream& progress_out)
    : options_(options),
      probe_(probe),
      progress_out_(progress_out),
      timeout_(to_ns(options.timeout_s)),
      heartbeat_(to_ns(options.heartbeat_s)),
      duration_(to_ns(options.duration_s)) {
  asio::io_context io;
  tcp::resolver resolver(io);
  error_code ec;
  const auto found = resolver.resolve(options.host, std::to_string(options.port), ec);
  if (ec || found.empty()) {
    throw std::runtime_error("cannot resolve " + options.host + ": " + ec.message());
  }
  target_ = found.begin()->endpoint();
  // Made for ws too (unused there): a layer takes one whatever its kind.
  if (options.transport != Transport::kTcp && options.transport != Transport::kKcp) {
    tls_.emplace(net::client_tls(options.tls_ca_file));
  }
  for (const auto& s : options.source_addresses) {
    auto address = asio::ip::make_address(s, ec);
    if (ec) throw std::runtime_error("bad source address '" + s + "'");
    sources_.push_back(address);
  }
  const std::uint32_t threads = std::max<std::uint32_t>(1, options.threads);
  for (std::uint32_t t = 0; t < threads; ++t) {
    workers_.push_back(std::make_unique<Worker>(*this, t));
  }
  for (std::uint32_t i = 0; i < options.connections; ++i) workers_[i % threads]->add_connection(i);
}

std::uint64_t Load::total_messages() const {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->messages();
  return n;
}

std::uint64_t Load::total_errors() const {
  std::uint64_t n = 0;
  for (const auto& w : workers_) {
    for (std::size_t k = 0; k < kErrorKinds; ++k) n += w->errors(static_cast<ErrorKind>(k));
  }
  return n;
}

void Load::control(Clock::time_point now) {
  const std::uint32_t total = options_.connections;
  switch (phase_.load(std::memory_order_relaxed)) {
    case Phase::kRamp:
      if (settled_.load(std::memory_order_relaxed) == total) {
        cpu_at_go_ = cpu_now();  // reads /proc: before the clock starts
        go_at_ = Clock::now();
        phase_.store(Phase::kGo, std::memory_order_release);
      }
      break;
    case Phase::kGo: {
      bool over = duration_.count() > 0 && now - go_at_ >= duration_;
      // Nobody left to measure, or (echo) everyone finished its messages.
      over = over || closed_.load(std::memory_order_relaxed) == total;
      over = over || (!options_.idle && done_.load(std::memory_order_acquire) == total);
      if (over) {
        stop_at_ = now;
        phase_.store(Phase::kStop, std::memory_order_release);
      }
      break;
    }
    case Phase::kStop:
      if (done_.load(std::memory_order_acquire) == total) {
        const Clock::time_point last_done{Clock::duration(last_done_ns_.load())};
        end_at_ = std::max(stop_at_, last_done);
        // Sampled before kFinish is published: every connection still open.
        held_up_ = up_.load(std::memory_order_relaxed);
        cpu_at_end_ = cpu_now();
        if (probe_.memory) memory_held_ = probe_.memory();
        phase_.store(Phase::kFinish, std::memory_order_release);
      }
      break;
    case Phase::kFinish:
      break;
  }
  if (options_.progress && now >= next_progress_) {
    print_progress(now);
    next_progress_ += std::chrono::seconds(1);
  }
}

void Load::print_progress(Clock::time_point now) {
  if (now - start_ < std::chrono::milliseconds(500)) return;  // not at t=0
  const std::uint64_t messages = total_messages();
  const Phase phase = phase_.load(std::memory_order_relaxed);
  char line[256];
  if (phase == Phase::kRamp) {
    std::snprintf(line, sizeof line, "bench %6.1fs ramp: up %u/%u, errors %llu\n",
                  seconds_between(start_, now), up_.load(std::memory_order_relaxed),
                  options_.connections, static_cast<unsigned long long>(total_errors()));
  } else {
    const double run_s = std::max(1e-9, seconds_between(go_at_, now));
    std::snprintf(line, sizeof line,
                  "bench %6.1fs %s: up %u/%u, %llu msgs, %.0f msgs/s (last second %llu), "
                  "errors %llu\n",
                  seconds_between(start_, now), options_.idle ? "idle" : "run",
                  up_.load(std::memory_order_relaxed), options_.connections,
                  static_cast<unsigned long long>(messages), static_cast<double>(messages) / run_s,
                  static_cast<unsigned long long>(messages - last_progress_messages_),
                  static_cast<unsigned long long>(total_errors()));
  }
  last_progress_messages_ = messages;
  progress_out_ << line << std::flush;
}

Load::CpuSample Load::cpu_now() const {
  CpuSample sample;
  if (probe_.cpu_us) sample.gateway_us = probe_.cpu_us();
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  const auto us = [](const timeval& t) {
    return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(t.tv_usec);
  };
  sample.bench_us = us(self.ru_utime) + us(self.ru_stime);
  return sample;
}

LoadResult Load::run() {
  LoadResult result;
  if (probe_.memory) result.memory_baseline = probe_.memory();
  cpu_at_start_ = cpu_now();
  start_ = Clock::now();
  next_progress_ = start_ + std::chrono::seconds(1);

  std::vector<std::thread> threads;
  for (std::size_t t = 1; t < workers_.size(); ++t) {
    threads.emplace_back([w = workers_[t].get()] { w->run(); });
  }
  workers_[0]->run();
  for (auto& t : threads) t.join();

  result.connections_up = peak_up_.load();
  result.ramp_s = seconds_between(start_, go_at_);
  result.seconds = seconds_between(go_at_, end_at_);
  for (const auto& w : workers_) {
    result.messages += w->messages();
    result.latency_us.merge(w->latency_us());
    result.errors.connect += w->errors(ErrorKind::kConnect);
    result.errors.login += w->errors(ErrorKind::kLogin);
    result.errors.closed += w->errors(ErrorKind::kClosed);
    result.errors.bad_reply += w->errors(ErrorKind::kBadReply);
    result.errors.timeout += w->errors(ErrorKind::kTimeout);
    for (const auto& s : w->error_samples()) {
      if (result.error_samples.size() < kMaxErrorSamples) result.error_samples.push_back(s);
    }
  }
  result.memory_held = memory_held_;
  result.connections_held = held_up_;
  result.bench_cpu_us = cpu_at_end_.bench_us - cpu_at_go_.bench_us;
  // A gateway process that exited meanwhile took its CPU time out of the
  // sum: no figure rather than a wrong one.
  if (probe_.cpu_us && cpu_at_end_.gateway_us >= cpu_at_go_.gateway_us) {
    result.gateway_cpu_us = cpu_at_end_.gateway_us - cpu_at_go_.gateway_us;
  }
  if (probe_.cpu_us && cpu_at_go_.gateway_us >= cpu_at_start_.gateway_us) {
    result.ramp_gateway_cpu_us = cpu_at_go_.gateway_us - cpu_at_start_.gateway_us;
  }
  return result;
}

// ---------------------------------------------------------------- JSON

void append_number(std::string& out, const char* key, double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, ",\"%s\":%.*f", key, decimals, value);
  out += buf;
}

void append_int(std::string& out, const char* key, std::int64_t value) {
  out += ",\"";
  out += key;
  out += "\":" + std::to_string(value);
}

void append_uint(std::string& out, const char* key, std::uint64_t value) {
  out += ",\"";
  out += key;
  out += "\":" + std::to_string(value);
}

void append_null(std::string& out, const char* key) {
  out += ",\"";
  out += key;
  out += "\":null";
}

void append_string(std::string& out, const char* key, const char* value) {
  out += ",\"";
  out += key;
  out += "\":\"";
  out += value;
  out += "\"";
}

}  // namespace

const char* crypto_name(Crypto crypto) noexcept {
  switch (crypto) {
    case Crypto::kClear:
      return "clear";
    case Crypto::kLegacy:
      return "legacy";
    case Crypto::kModern:
      return "modern";
  }
  return "?";
}

const char* transport_name(Transport transport) noexcept {
  switch (transport) {
    case Transport::kTcp:
      return "tcp";
    case Transport::kKcp:
      return "kcp";
    case Transport::kTls:
      return "tls";
    case Transport::kWs:
      return "ws";
    case Transport::kWss:
      return "wss";
  }
  return "?";
}

std::optional<Transport> parse_transport(std::string_view name) noexcept {
  for (const Transport t :
       {Transport::kTcp, Transport::kKcp, Transport::kTls, Transport::kWs, Transport::kWss}) {
    if (name == transport_name(t)) return t;
  }
  return std::nullopt;
}

std::optional<Crypto> parse_crypto(std::string_view name) noexcept {
  for (const Crypto c : {Crypto::kClear, Crypto::kLegacy, Crypto::kModern}) {
    if (name == crypto_name(c)) return c;
  }
  return std::nullopt;
}

LoadResult run_load(const LoadOptions& options, const GatewayProbe& probe,
                    std::ostream& progress_out) {
  if (options.connections == 0) throw std::runtime_error("no connections to open");
  if (options.window == 0) throw std::runtime_error("the window must be at least 1");
  const std::uint32_t max_body = max_body_bytes(options.crypto);
  if (options.body_bytes < kMinBodyBytes || options.body_bytes > max_body) {
    throw std::runtime_error("body bytes must be " + std::to_string(kMinBodyBytes) + ".." +
                             std::to_string(max_body) + " with " + crypto_name(options.crypto) +
                             " sessions");
  }
  if (options.duration_s <= 0 && (options.idle || options.messages == 0)) {
    throw std::runtime_error("without a duration the run needs a message count (not idle)");
  }
  // Each connection is one fd; the loops, timers and stdio need a few more.
  const std::uint64_t needed =
      std::uint64_t{options.connections} + 16 + std::uint64_t{4} * options.threads;
  const std::uint64_t limit = raise_fd_limit();
  if (limit < needed) {
    throw std::runtime_error(std::to_string(options.connections) + " connections need " +
                             std::to_string(needed) + " file descriptors; RLIMIT_NOFILE allows " +
                             std::to_string(limit) + " (raise the hard limit: ulimit -Hn)");
  }
  Load load(options, probe, progress_out);
  return load.run();
}

std::uint64_t raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

std::string to_json(const LoadOptions& options, const LoadResult& r) {
  std::string out = "{\"connections\":" + std::to_string(options.connections);
  out += ",\"encrypted\":";
  out += options.crypto != Crypto::kClear ? "true" : "false";
  append_uint(out, "window", options.window);
  append_uint(out, "body_bytes", options.body_bytes);
  append_number(out, "seconds", r.seconds, 3);
  append_uint(out, "messages", r.messages);
  append_uint(out, "errors", r.errors.total());
  append_number(out, "msgs_per_s", r.seconds > 0 ? static_cast<double>(r.messages) / r.seconds : 0,
                1);
  const LatencyHistogram& h = r.latency_us;
  const std::pair<const char*, double> percentiles[] = {
      {"p50_us", 50}, {"p90_us", 90}, {"p99_us", 99}, {"p999_us", 99.9}};
  for (const auto& [key, p] : percentiles) {
    if (h.count() == 0) {
      append_null(out, key);
    } else {
      append_uint(out, key, h.value_at_percentile(p));
    }
  }
  if (h.count() == 0) {
    append_null(out, "max_us");
  } else {
    append_uint(out, "max_us", h.max());
  }
  if (r.memory_held) {
    append_uint(out, "gateway_rss_kib", r.memory_held->rss_kib);
  } else {
    append_null(out, "gateway_rss_kib");
  }

  // Beyond the contract: what explains the numbers above.
  if (h.count() == 0) {
    append_null(out, "mean_us");
  } else {
    append_number(out, "mean_us", h.mean(), 1);
  }
  append_uint(out, "connections_up", r.connections_up);
  append_number(out, "ramp_s", r.ramp_s, 3);
  append_uint(out, "threads", options.threads);
  append_string(out, "transport", transport_name(options.transport));
  append_string(out, "crypto", crypto_name(options.crypto));  // which encryption, if any
  if (options.crypto == Crypto::kModern) {  // the AEAD asked for (the gateway may fall back)
    append_string(
        out, "aead",
        modern::name_of(
            modern::aead_from_wire(options.aead).value_or(modern::Aead::kChaCha20Poly1305))
            .data());
  }
  // CPU per echoed message: steadier than the rate on a shared machine,
  // and it says which side of the run spent what.
  const auto per_message = [&r](std::uint64_t cpu_us) {
    return static_cast<double>(cpu_us) / static_cast<double>(r.messages);
  };
  if (r.messages > 0 && r.gateway_cpu_us) {
    append_number(out, "gateway_cpu_us_per_msg", per_message(*r.gateway_cpu_us), 2);
  } else {
    append_null(out, "gateway_cpu_us_per_msg");
  }
  if (r.messages > 0) {
    append_number(out, "bench_cpu_us_per_msg", per_message(r.bench_cpu_us), 2);
  } else {
    append_null(out, "bench_cpu_us_per_msg");
  }
  // The ramp's cost per connection logged in (accept, TLS handshake,
  // upgrade, key exchange, login, game stream), and its rate (bounded by
  // --connect-rate).
  if (r.connections_up > 0 && r.ramp_gateway_cpu_us) {
    append_number(out, "gateway_cpu_us_per_connect",
                  static_cast<double>(*r.ramp_gateway_cpu_us) / r.connections_up, 1);
  } else {
    append_null(out, "gateway_cpu_us_per_connect");
  }
  append_number(out, "connects_per_s", r.ramp_s > 0 ? r.connections_up / r.ramp_s : 0, 1);
  out += ",\"errors_by_kind\":{\"connect\":" + std::to_string(r.errors.connect) +
         ",\"login\":" + std::to_string(r.errors.login) +
         ",\"closed\":" + std::to_string(r.errors.closed) +
         ",\"bad_reply\":" + std::to_string(r.errors.bad_reply) +
         ",\"timeout\":" + std::to_string(r.errors.timeout) + "}";
  if (r.memory_held) {
    if (r.memory_held->pss_kib) {
      append_uint(out, "gateway_pss_kib", *r.memory_held->pss_kib);
    } else {
      append_null(out, "gateway_pss_kib");
    }
    append_uint(out, "gateway_processes", r.memory_held->processes);
  }

  if (options.idle) {
    out += ",\"idle\":true";
    append_uint(out, "idle_connections", r.connections_held);
    const auto& base = r.memory_baseline;
    const auto& held = r.memory_held;
    if (base && held) {
      append_uint(out, "gateway_rss_baseline_kib", base->rss_kib);
      if (base->pss_kib) append_uint(out, "gateway_pss_baseline_kib", *base->pss_kib);
    }
    // Per connection = growth from before the first connect to the hold,
    // over the connections actually held.
    const auto per_connection = [&](std::uint64_t before, std::uint64_t after) {
      return (static_cast<double>(after) - static_cast<double>(before)) * 1024.0 /
             static_cast<double>(r.connections_held);
    };
    if (base && held && r.connections_held > 0) {
      append_int(out, "rss_per_connection_bytes",
                 std::llround(per_connection(base->rss_kib, held->rss_kib)));
      if (base->pss_kib && held->pss_kib) {
        append_int(out, "pss_per_connection_bytes",
                   std::llround(per_connection(*base->pss_kib, *held->pss_kib)));
      }
    } else {
      append_null(out, "rss_per_connection_bytes");
    }
  }
  out += "}";
  return out;
}

}  // namespace gatehouse::bench
