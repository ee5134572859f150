// EdgeSocket: a TCP socket whose receive tells Asio's reactor when a read
// drained the socket.
//
// Asio registers a socket with epoll once, edge-triggered, and starts every
// async_receive with a speculative recv(). With one message in flight per
// connection that recv() can only fail: the previous read took everything
// there was, so every message costs an EAGAIN (a third of the frontend's
// syscalls in the 100-connection ping-pong, docs/benchmarks.md). Asio
// already skips the speculative read after a read that returned 0 bytes; a
// short read on a stream socket drains its receive queue just as surely
// (tcp_recvmsg copies until the buffer is full or the queue is empty), and
// the edge-triggered registration reports the next arrival, so this receive
// tells the reactor "exhausted" after a short read too. Data that arrives
// between the short read and the next receive raises an edge that re-enables
// the speculative read, so nothing waits for a later event.
//
// Only Asio's epoll reactor has the speculative-read flag; elsewhere (io_uring
// as default, other platforms) async_receive_edge is async_receive. The
// operation below is built from Asio's detail layer as Boost 1.81 (Debian 12)
// has it; a Boost upgrade that changes that layer fails to compile here, and
// tests/common/edge_socket_test.cc says whether the behaviour still holds.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#define GATEHOUSE_EDGE_RECEIVE 1
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#endif

namespace gatehouse::net {

#if GATEHOUSE_EDGE_RECEIVE
namespace detail {

namespace ad = boost::asio::detail;

/// Asio's reactive_socket_recv_op for one buffer, with the short-read rule.
template <class Handler, class IoExecutor>
class EdgeReceiveOp : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(EdgeReceiveOp);

  EdgeReceiveOp(ad::socket_type socket, boost::asio::mutable_buffer buffer, Handler& handler,
                const IoExecutor& io_ex)
      : ad::reactor_op(boost::system::error_code(), &EdgeReceiveOp::do_perform,
                       &EdgeReceiveOp::do_complete),
        socket_(socket),
        buffer_(buffer),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {}

  static status do_perform(ad::reactor_op* base) {
    auto* o = static_cast<EdgeReceiveOp*>(base);
    if (!ad::socket_ops::non_blocking_recv1(o->socket_, o->buffer_.data(), o->buffer_.size(), 0,
                                            true, o->ec_, o->bytes_transferred_)) {
      return not_done;  // EAGAIN: wait for the edge
    }
    // 0 bytes (end of stream or an error) or fewer than asked: the queue is
    // empty, the next receive waits for the edge instead of trying.
    return o->bytes_transferred_ < o->buffer_.size() ? done_and_exhausted : done;
  }

  static void do_complete(void* owner, ad::operation* base, const boost::system::error_code&,
                          std::size_t) {
    auto* o = static_cast<EdgeReceiveOp*>(base);
    ptr p = {std::addressof(o->handler_), o, o};
    ad::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    // The handler is moved out so that the operation's memory is freed
    // before the upcall (which usually starts the next receive).
    ad::binder2<Handler, boost::system::error_code, std::size_t> handler(o->handler_, o->ec_,
                                                                         o->bytes_transferred_);
    p.h = std::addressof(handler.handler_);
    p.reset();
    if (owner != nullptr) {
      ad::fenced_block b(ad::fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

 private:
  ad::socket_type socket_;
  boost::asio::mutable_buffer buffer_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

}  // namespace detail
#endif

class EdgeSocket : public boost::asio::ip::tcp::socket {
 public:
  using boost::asio::ip::tcp::socket::socket;
  explicit EdgeSocket(boost::asio::ip::tcp::socket&& socket)
      : boost::asio::ip::tcp::socket(std::move(socket)) {}
  EdgeSocket& operator=(boost::asio::ip::tcp::socket&& socket) {
    boost::asio::ip::tcp::socket::operator=(std::move(socket));
    return *this;
  }

  /// async_receive(buffer, handler) for a non-empty buffer, with the
  /// short-read rule above. handler(error_code, std::size_t). Cancelled by
  /// cancel() or close() (operation_aborted); a handler's own cancellation
  /// slot is not used.
  template <class Handler>
  void async_receive_edge(boost::asio::mutable_buffer buffer, Handler&& handler) {
#if GATEHOUSE_EDGE_RECEIVE
    using Op = detail::EdgeReceiveOp<std::decay_t<Handler>, executor_type>;
    auto& reactor = boost::asio::use_service<detail::ad::reactor>(impl_.get_service().context());
    auto& impl = impl_.get_implementation();
    std::decay_t<Handler> h(std::forward<Handler>(handler));
    typename Op::ptr p = {std::addressof(h), Op::ptr::allocate(h), nullptr};
    p.p = new (p.v) Op(impl.socket_, buffer, h, impl_.get_executor());
    namespace ops = detail::ad::socket_ops;
    if ((impl.state_ & ops::non_blocking) != 0 ||
        ops::set_internal_non_blocking(impl.socket_, impl.state_, true, p.p->ec_)) {
      reactor.start_op(detail::ad::reactor::read_op, impl.socket_, impl.reactor_data_, p.p,
                       /*is_continuation=*/false, /*allow_speculative=*/true);
    } else {
      reactor.post_immediate_completion(p.p, false);
    }
    p.v = p.p = nullptr;
#else
    async_receive(buffer, std::forward<Handler>(handler));
#endif
  }
};

}  // namespace gatehouse::net
