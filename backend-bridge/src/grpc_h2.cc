#include "gatehouse/bridge/grpc_h2.h"

#include <grpcpp/support/status_code_enum.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <random>

#include "gatehouse/base/log.h"

namespace gatehouse::bridge {
namespace {

constexpr std::size_t kPrefixBytes = GrpcMessageReader::kPrefixBytes;
// Stream ids are 31 bits and never reused: a connection that has used this
// many takes no new call (a new connection does).
constexpr std::int32_t kLastStreamId = (1 << 30);

/// A call's status from an HTTP status other than 200 (grpc/doc/http-grpc-status-mapping.md).
std::int32_t code_of_http(unsigned status) {
  switch (status) {
    case 400:
      return grpc::StatusCode::INTERNAL;
    case 401:
      return grpc::StatusCode::UNAUTHENTICATED;
    case 403:
      return grpc::StatusCode::PERMISSION_DENIED;
    case 404:
      return grpc::StatusCode::UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return grpc::StatusCode::UNAVAILABLE;
    default:
      return grpc::StatusCode::UNKNOWN;
  }
}

/// A call's status from the RST_STREAM that ended it (no trailers came).
std::int32_t code_of_reset(std::uint32_t error_code) {
  switch (error_code) {
    case NGHTTP2_REFUSED_STREAM:
      return grpc::StatusCode::UNAVAILABLE;  // not processed: safe to try again
    case NGHTTP2_CANCEL:
      return grpc::StatusCode::CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

/// grpc-message is percent-encoded (PROTOCOL-HTTP2: Percent-Encoded).
std::string percent_decoded(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      const int hi = hex(in[i + 1]);
      const int lo = hex(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  // nghttp2 copies both (no NO_COPY flags): the views need not outlive it.
  return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

/// HOST:PORT or [V6]:PORT.
bool split_address(const std::string& address, std::string& host, std::string& port) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return false;
  host = address.substr(0, colon);
  port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return !host.empty();
}

}  // namespace

// ---------------------------------------------------------------- callbacks

struct GrpcConnection::Callbacks {
  static GrpcConnection& self(void* user_data) { return *static_cast<GrpcConnection*>(user_data); }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    GrpcCall* call = self(user_data).call_of(frame->hd.stream_id);
    if (call == nullptr) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      unsigned status = 0;
      for (const char c : v) status = status * 10 + static_cast<unsigned>(c - '0');
      call->http_status_ = static_cast<std::uint16_t>(std::min(status, 999u));
    } else if (n == "grpc-status") {
      std::int32_t code = 0;
      for (const char c : v) {
        if (c < '0' || c > '9' || code > 1000) {
          code = grpc::StatusCode::UNKNOWN;
          break;
        }
        code = code * 10 + (c - '0');
      }
      call->grpc_status_ = code;
    } else if (n == "grpc-message") {
      call->grpc_message_ = percent_decoded(v);
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    GrpcConnection& c = self(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_SETTINGS:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) c.settings_seen_ = true;
        break;
      case NGHTTP2_GOAWAY:
        // Calls it did not take end REFUSED_STREAM (UNAVAILABLE); the others
        // finish here, and new ones go to a new connection.
        c.going_away_ = true;
        break;
      case NGHTTP2_HEADERS:
      case NGHTTP2_DATA:
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
          if (GrpcCall* call = c.call_of(frame->hd.stream_id)) c.finished(*call);
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data) {
    GrpcConnection& c = self(user_data);
    // The connection's window goes back at once (one held call must not
    // stall the others); the stream's unless its owner holds its reads.
    nghttp2_session_consume_connection(session, len);
    GrpcCall* call = c.call_of(stream_id);
    if (call == nullptr || call->ended_) {
      nghttp2_session_consume_stream(session, stream_id, len);
      return 0;
    }
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    std::size_t used = 0;
    if (!call->paused_ && call->held_.empty()) {
      used = c.deliver(*call, bytes, len);
      if (call->ended_) return 0;  // deliver() failed it
      nghttp2_session_consume_stream(session, stream_id, used);
    }
    call->held_.append(reinterpret_cast<const char*>(bytes + used), len - used);
    return 0;
  }

  /// nghttp2 found the peer breaking HTTP/2 (it then ends the session):
  /// the reason its calls are given.
  static int on_error(nghttp2_session*, int, const char* message, std::size_t len,
                      void* user_data) {
    GrpcConnection& c = self(user_data);
    if (c.protocol_error_.empty()) {
      c.protocol_error_ = "HTTP/2 from the game service: " + std::string(message, len);
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data) {
    GrpcConnection& c = self(user_data);
    GrpcCall* call = c.call_of(stream_id);
    if (call == nullptr) return 0;
    if (call->remote_ended_) {
      call->stream_id_ = 0;  // the call ends once what it holds is read
      return 0;
    }
    if (!call->ended_) {
      if (call->cancelled_) {
        c.end(*call, grpc::StatusCode::CANCELLED, "cancelled");
      } else if (!c.protocol_error_.empty()) {
        c.end(*call, grpc::StatusCode::UNAVAILABLE, c.protocol_error_);
      } else {
        const std::int32_t code = code_of_reset(error_code);
        c.end(
            *call, code,
            std::string("stream reset by the game service: ") + nghttp2_http2_strerror(error_code));
      }
    }
    return 0;
  }

  static ssize_t read_data(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* data_flags, nghttp2_data_source*,
                           void* user_data) {
    GrpcConnection& c = self(user_data);
    GrpcCall* call = c.call_of(stream_id);
    if (call == nullptr || call->ended_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    const std::size_t left = call->out_.size() - call->out_taken_;
    const std::size_t n = std::min(left, length);
    std::memcpy(buf, call->out_.data() + call->out_taken_, n);
    call->out_taken_ += n;
    if (call->out_taken_ == call->out_.size()) {
      // Every message written so far is in HTTP/2's hands.
      if (c.options_.in_flight != nullptr) {
        c.options_.in_flight->fetch_sub(call->out_messages_, std::memory_order_relaxed);
      }
      call->out_messages_ = 0;
      call->out_.clear();
      call->out_taken_ = 0;
      if (call->send_closed_) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (n == 0) {
        call->deferred_ = true;
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }
};

// ---------------------------------------------------------------- connection

GrpcConnection::GrpcConnection(const std::string& address, const GrpcChannelOptions& options,
                               IoPoller& io, std::int64_t now_ns)
    : options_(options),
      io_(io),
      connect_deadline_ns_(now_ns + std::chrono::nanoseconds(options.connect_timeout).count()),
      last_read_ns_(now_ns) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(callbacks, &Callbacks::on_error);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  nghttp2_option_set_no_auto_window_update(option, 1);  // on_data_chunk gives it back
  nghttp2_option_set_no_closed_streams(option, 1);      // no priority tree: no memory for them
  const int rc = nghttp2_session_client_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rc != 0) {
    session_ = nullptr;
    fail(std::string("HTTP/2 session: ") + nghttp2_strerror(rc));
    return;
  }
  // Each stream keeps HTTP/2's initial 64 KiB window (a session's messages
  // are small; a flooding game is held back in its own process), the
  // connection gets a large one (it is given back as it is read).
  const std::array settings{nghttp2_settings_entry{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                            nghttp2_settings_entry{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535},
                            nghttp2_settings_entry{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 1 << 30);

  std::string host;
  std::string port;
  if (!split_address(address, host, port)) {
    fail("not HOST:PORT: " + address);
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int gai = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); gai != 0) {
    fail("cannot resolve " + address + ": " + ::gai_strerror(gai));
    return;
  }
  fd_ = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd_ < 0) {
    ::freeaddrinfo(found);
    fail(std::string("socket: ") + std::strerror(errno));
    return;
  }
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const auto user_timeout = static_cast<unsigned>(options.user_timeout.count());
  ::setsockopt(fd_, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
  const int connected = ::connect(fd_, found->ai_addr, found->ai_addrlen);
  const int connect_errno = errno;
  ::freeaddrinfo(found);
  if (connected != 0 && connect_errno != EINPROGRESS) {
    fail("connect to " + address + ": " + std::strerror(connect_errno));
    return;
  }
  if (connected == 0) state_ = State::kReady;
  want_write(true);  // the connect's end, then the preface
}

GrpcConnection::~GrpcConnection() {
  fail("shut down");
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool GrpcConnection::accepts_calls() const noexcept {
  return state_ != State::kClosed && !going_away_ && session_ != nullptr &&
         nghttp2_session_get_next_stream_id(session_) < std::uint32_t{kLastStreamId};
}

bool GrpcConnection::quiet() const noexcept {
  return state_ == State::kClosed ||
         (calls_ == 0 && out_.empty() && nghttp2_session_want_write(session_) == 0);
}

GrpcCall* GrpcConnection::call_of(std::int32_t stream_id) const noexcept {
  return static_cast<GrpcCall*>(nghttp2_session_get_stream_user_data(session_, stream_id));
}

void GrpcConnection::link(GrpcCall& call) noexcept {
  call.connection_ = this;
  call.prev_ = nullptr;
  call.next_ = calls_head_;
  if (calls_head_ != nullptr) calls_head_->prev_ = &call;
  calls_head_ = &call;
  ++calls_;
}

void GrpcConnection::start(GrpcCall& call, std::string_view path, std::string_view authority,
                           GrpcMetadata metadata) {
  std::vector<nghttp2_nv> headers;
  headers.reserve(8 + metadata.size());
  headers.push_back(header(":method", "POST"));
  headers.push_back(header(":scheme", "http"));
  headers.push_back(header(":path", path));
  headers.push_back(header(":authority", authority));
  headers.push_back(header("te", "trailers"));
  headers.push_back(header("content-type", "application/grpc"));
  headers.push_back(header("user-agent", "gatehouse-bridge grpc-h2"));
  for (const auto& [name, value] : metadata) headers.push_back(header(name, value));
  nghttp2_data_provider body{};
  body.read_callback = &Callbacks::read_data;
  link(call);
  const std::int32_t id =
      nghttp2_submit_request(session_, nullptr, headers.data(), headers.size(), &body, &call);
  if (id < 0) {
    end(call, grpc::StatusCode::UNAVAILABLE,
        std::string("cannot start the call: ") + nghttp2_strerror(id));
    return;
  }
  call.stream_id_ = id;
}

bool GrpcConnection::write(GrpcCall& call, const google::protobuf::MessageLite& message) {
  if (call.ended_ || call.send_closed_) return false;
  const std::size_t size = message.ByteSizeLong();
  const std::size_t at = call.out_.size();
  call.out_.resize(at + kPrefixBytes + size);
  auto* p = reinterpret_cast<std::uint8_t*>(call.out_.data() + at);
  p[0] = 0;  // not compressed
  p[1] = static_cast<std::uint8_t>(size >> 24);
  p[2] = static_cast<std::uint8_t>(size >> 16);
  p[3] = static_cast<std::uint8_t>(size >> 8);
  p[4] = static_cast<std::uint8_t>(size);
  message.SerializeWithCachedSizesToArray(p + kPrefixBytes);
  ++call.out_messages_;
  if (options_.in_flight != nullptr) options_.in_flight->fetch_add(1, std::memory_order_relaxed);
  if (call.deferred_ && call.stream_id_ > 0) {
    call.deferred_ = false;
    nghttp2_session_resume_data(session_, call.stream_id_);
  }
  return true;
}

void GrpcConnection::close_send(GrpcCall& call) {
  if (call.ended_ || call.send_closed_) return;
  call.send_closed_ = true;
  if (call.deferred_ && call.stream_id_ > 0) {
    call.deferred_ = false;
    nghttp2_session_resume_data(session_, call.stream_id_);
  }
}

void GrpcConnection::cancel(GrpcCall& call) {
  if (call.ended_ || call.cancelled_) return;
  call.cancelled_ = true;
  if (call.stream_id_ > 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, call.stream_id_, NGHTTP2_CANCEL);
  } else {
    end(call, grpc::StatusCode::CANCELLED, "cancelled");
  }
}

void GrpcConnection::abort(GrpcCall& call, std::int32_t code, std::string_view message) {
  if (call.ended_) return;
  if (call.stream_id_ > 0) {
    call.cancelled_ = true;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, call.stream_id_, NGHTTP2_CANCEL);
  }
  end(call, code, message);
}

void GrpcConnection::resume(GrpcCall& call) {
  call.paused_ = false;
  if (call.ended_ || call.held_.empty() || call.resuming_) return;
  // Read at the next pump(), not from inside whoever resumed it.
  call.resuming_ = true;
  resumed_.push_back(&call);
}

std::size_t GrpcConnection::read_held() {
  std::size_t work = 0;
  std::vector<GrpcCall*> resumed;
  resumed.swap(resumed_);
  for (GrpcCall* call : resumed) {
    call->resuming_ = false;
    if (call->ended_ || call->paused_) continue;
    ++work;
    const std::size_t used =
        deliver(*call, reinterpret_cast<const std::byte*>(call->held_.data()), call->held_.size());
    if (call->ended_) continue;
    if (call->stream_id_ > 0) nghttp2_session_consume_stream(session_, call->stream_id_, used);
    call->held_.erase(0, used);
    if (call->held_.empty()) {
      std::string().swap(call->held_);
      if (call->remote_ended_) finished(*call);
    }
  }
  return work;
}

void GrpcConnection::end(GrpcCall& call, std::int32_t code, std::string_view message) {
  if (call.ended_) return;
  call.ended_ = true;
  if (call.resuming_) {
    std::erase(resumed_, &call);
    call.resuming_ = false;
  }
  if (call.prev_ != nullptr) call.prev_->next_ = call.next_;
  if (call.next_ != nullptr) call.next_->prev_ = call.prev_;
  if (calls_head_ == &call) calls_head_ = call.next_;
  call.prev_ = call.next_ = nullptr;
  --calls_;
  if (call.stream_id_ > 0 && session_ != nullptr) {
    nghttp2_session_set_stream_user_data(session_, call.stream_id_, nullptr);
  }
  call.connection_ = nullptr;
  const std::uint64_t unsent = call.out_messages_;
  if (options_.in_flight != nullptr && unsent != 0) {
    options_.in_flight->fetch_sub(static_cast<std::int64_t>(unsent), std::memory_order_relaxed);
  }
  call.out_messages_ = 0;
  std::string().swap(call.out_);
  call.in_.clear();
  std::string().swap(call.held_);
  call.on_end(code, message, unsent);
}

void GrpcConnection::finished(GrpcCall& call) {
  if (!call.held_.empty()) {
    call.remote_ended_ = true;  // after what it holds (read_held())
    return;
  }
  std::int32_t code = grpc::StatusCode::INTERNAL;
  std::string message;
  if (call.http_status_ != 200 && call.http_status_ != 0) {
    code = code_of_http(call.http_status_);
    message = "HTTP status " + std::to_string(call.http_status_);
  } else if (call.grpc_status_ < 0) {
    message = "the game service ended the stream without a grpc-status";
  } else if (call.in_.partial() && call.grpc_status_ == 0) {
    message = "the stream ended inside a message";
  } else {
    code = call.grpc_status_;
    message = std::move(call.grpc_message_);
  }
  const std::int32_t id = call.stream_id_;
  const bool local_open = !call.send_closed_ || call.out_taken_ < call.out_.size();
  end(call, code, message);
  // The server is done with the call; ours may still be open (a game that
  // ends a session sends its status first): reset it, as gRPC does.
  if (local_open && id > 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
  }
}

std::size_t GrpcConnection::deliver(GrpcCall& call, const std::byte* data, std::size_t size) {
  // DATA on a response that is not gRPC's: its status ends it (finished()).
  if (call.http_status_ != 200) return size;
  const auto [error, used] =
      call.in_.feed(data, size, options_.max_message_bytes, [&call](auto message) {
        call.on_message(message);
        return !call.ended_ && !call.paused_;
      });
  switch (error) {
    case GrpcMessageReader::Error::kNone:
      return used;
    case GrpcMessageReader::Error::kCompressed:
      abort(call, grpc::StatusCode::INTERNAL,
            "the game service sent a compressed message (none was offered)");
      break;
    case GrpcMessageReader::Error::kTooLarge:
      abort(call, grpc::StatusCode::RESOURCE_EXHAUSTED,
            "a message from the game service over " + std::to_string(options_.max_message_bytes) +
                " bytes");
      break;
  }
  return size;
}

bool GrpcConnection::check_connected() {
  pollfd p{fd_, POLLOUT, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  int error = 0;
  socklen_t len = sizeof error;
  ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len);
  if (error != 0) {
    fail(std::string("connect: ") + std::strerror(error));
    return false;
  }
  state_ = State::kReady;
  return true;
}

std::size_t GrpcConnection::read_socket(std::int64_t now_ns) {
  std::size_t work = 0;
  std::array<std::uint8_t, std::size_t{64} * 1024> buffer;
  for (int reads = 0; reads < 16 && state_ == State::kReady; ++reads) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      fail(std::string("read: ") + std::strerror(errno));
      break;
    }
    if (n == 0) {
      fail("the game service closed the connection");
      break;
    }
    ++work;
    last_read_ns_ = now_ns;
    const ssize_t used =
        nghttp2_session_mem_recv(session_, buffer.data(), static_cast<std::size_t>(n));
    if (used < 0) {
      fail(std::string("HTTP/2 from the game service: ") +
           nghttp2_strerror(static_cast<int>(used)));
      break;
    }
    if (static_cast<std::size_t>(n) < buffer.size()) break;  // the socket is empty
  }
  return work;
}

bool GrpcConnection::write_socket() {
  for (;;) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(n)));
      return false;
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  bool wrote = false;
  while (out_sent_ < out_.size()) {
    const ssize_t n =
        ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail(std::string("write: ") + std::strerror(errno));
      return wrote;
    }
    out_sent_ += static_cast<std::size_t>(n);
    wrote = true;
  }
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
    if (out_.capacity() > std::size_t{256} * 1024) std::string().swap(out_);
  }
  want_write(out_sent_ < out_.size());
  return wrote;
}

void GrpcConnection::want_write(bool want) {
  if (fd_ < 0 || want == watching_write_) return;
  io_.watch(fd_, want);
  watching_write_ = want;
}

std::size_t GrpcConnection::pump(std::int64_t now_ns) {
  if (state_ == State::kClosed) return 0;
  if (state_ == State::kConnecting) {
    if (!check_connected()) {
      if (state_ == State::kConnecting && now_ns > connect_deadline_ns_) {
        fail("connect timed out");
      }
      return state_ == State::kClosed ? 1 : 0;
    }
  }
  std::size_t work = resumed_.empty() ? 0 : read_held();
  work += read_socket(now_ns);
  if (state_ == State::kReady) keep_alive(now_ns);
  if (state_ == State::kReady && write_socket()) ++work;
  if (state_ == State::kReady && !nghttp2_session_want_read(session_) &&
      !nghttp2_session_want_write(session_) && out_.empty()) {
    // After a GOAWAY, nothing left; or nghttp2 ended it (the peer broke HTTP/2).
    fail(protocol_error_.empty() ? "the game service ended the connection" : protocol_error_);
  }
  return work;
}

void GrpcConnection::keep_alive(std::int64_t now_ns) {
  if (ping_sent_ns_ != 0 && last_read_ns_ > ping_sent_ns_) ping_sent_ns_ = 0;  // it answers
  if (ping_sent_ns_ != 0) {
    if (now_ns - ping_sent_ns_ > std::chrono::nanoseconds(options_.keepalive_timeout).count()) {
      fail("no answer from the game service to a PING in " +
           std::to_string(options_.keepalive_timeout.count()) + " ms");
    }
    return;
  }
  // Only with calls: gRPC servers allow a quiet connection without calls a
  // ping every 2 hours.
  if (calls_ != 0 &&
      now_ns - last_read_ns_ > std::chrono::nanoseconds(options_.keepalive_interval).count()) {
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
    ping_sent_ns_ = now_ns;
  }
}

void GrpcConnection::fail(const std::string& reason) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  error_ = reason;
  if (fd_ >= 0) {
    io_.forget(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  while (calls_head_ != nullptr) end(*calls_head_, grpc::StatusCode::UNAVAILABLE, reason);
}

// ---------------------------------------------------------------- channel

GrpcChannel::GrpcChannel(std::string address, GrpcChannelOptions options, IoPoller& io)
    : address_(std::move(address)),
      authority_(address_),
      options_(options),
      io_(io),
      backoff_(options_.initial_backoff) {}

GrpcChannel::~GrpcChannel() = default;

std::size_t GrpcChannel::calls() const noexcept {
  std::size_t n = current_ ? current_->calls() : 0;
  for (const auto& c : retiring_) n += c->calls();
  return n;
}

void GrpcChannel::retire_current() {
  if (current_ && !current_->quiet()) retiring_.push_back(std::move(current_));
  current_.reset();
}

void GrpcChannel::reap(std::int64_t now_ns) {
  if (!current_ || current_->state() != GrpcConnection::State::kClosed) return;
  // A connection that worked and broke is tried again at once; one that
  // never connected waits its backoff (doubling, jittered).
  if (current_->ever_ready()) {
    spdlog::warn("game service {}: {}", address_, current_->error());
    backoff_ = options_.initial_backoff;
    next_attempt_ns_ = now_ns;
  } else {
    spdlog::debug("game service {}: {}; next attempt in {} ms", address_, current_->error(),
                  backoff_.count());
    static thread_local std::minstd_rand jitter(std::random_device{}());
    const auto base = std::chrono::nanoseconds(backoff_).count();
    next_attempt_ns_ =
        now_ns + base +
        static_cast<std::int64_t>(jitter() % static_cast<std::uint64_t>(base / 5 + 1));
    backoff_ = std::min(backoff_ * 2, options_.max_backoff);
  }
  last_error_ = current_->error();
  current_.reset();
}

GrpcConnection* GrpcChannel::usable(std::int64_t now_ns) {
  reap(now_ns);
  if (current_ && !current_->accepts_calls()) retire_current();
  if (!current_) {
    if (now_ns < next_attempt_ns_) return nullptr;
    current_ = std::make_unique<GrpcConnection>(address_, options_, io_, now_ns);
    if (current_->state() == GrpcConnection::State::kClosed) {
      reap(now_ns);  // backs off
      return nullptr;
    }
  }
  return current_.get();
}

void GrpcChannel::start(GrpcCall& call, std::string_view path, GrpcMetadata metadata,
                        std::int64_t now_ns) {
  GrpcConnection* connection = usable(now_ns);
  if (connection == nullptr) {
    // gRPC's fail-fast: no connection to wait for.
    call.on_end(grpc::StatusCode::UNAVAILABLE,
                "game service " + address_ + " unavailable: " + last_error_, 0);
    return;
  }
  connection->start(call, path, authority_, metadata);
}

bool GrpcChannel::write(GrpcCall& call, const google::protobuf::MessageLite& message) {
  return call.connection_ != nullptr && call.connection_->write(call, message);
}

void GrpcChannel::close_send(GrpcCall& call) {
  if (call.connection_ != nullptr) call.connection_->close_send(call);
}

void GrpcChannel::cancel(GrpcCall& call) {
  if (call.connection_ != nullptr) call.connection_->cancel(call);
}

void GrpcChannel::abort(GrpcCall& call, std::int32_t code, std::string_view message) {
  if (call.connection_ != nullptr) call.connection_->abort(call, code, message);
}

void GrpcChannel::resume(GrpcCall& call) {
  if (call.connection_ != nullptr) call.connection_->resume(call);
}

std::size_t GrpcChannel::pump(std::int64_t now_ns) {
  std::size_t work = 0;
  if (current_) {
    work += current_->pump(now_ns);
    reap(now_ns);
  }
  for (auto& c : retiring_) work += c->pump(now_ns);
  std::erase_if(retiring_, [](const auto& c) { return c->quiet(); });
  return work;
}

bool GrpcChannel::ready(std::int64_t now_ns) {
  GrpcConnection* connection = usable(now_ns);
  return connection != nullptr && connection->ready();
}

void GrpcChannel::move_to(std::string address) {
  if (address == address_) return;
  address_ = std::move(address);
  authority_ = address_;
  retire_current();
  backoff_ = options_.initial_backoff;
  next_attempt_ns_ = 0;
}

}  // namespace gatehouse::bridge
