// net::EdgeSocket: the receive that skips the speculative recv() after a
// short read must still see every byte, however the next bytes and the next
// receive interleave (the edge raised while no receive was pending is what
// carries them).
#include "gatehouse/net/edge_socket.h"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

namespace gatehouse::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

struct Received {
  boost::system::error_code ec;
  std::string bytes;
};

class EdgeSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client_.connect(acceptor.local_endpoint());
    tcp::socket accepted(io_);
    acceptor.accept(accepted);
    server_ = std::move(accepted);
  }

  /// One receive into a buffer of `capacity` bytes, run until it completes.
  Received receive(std::size_t capacity) {
    buffer_.assign(capacity, '\0');
    std::optional<Received> got;
    server_.async_receive_edge(asio::buffer(buffer_),
                               [&](boost::system::error_code ec, std::size_t n) {
                                 got = Received{ec, buffer_.substr(0, n)};
                               });
    io_.restart();
    for (int i = 0; i < 200 && !got; ++i) io_.run_one_for(10ms);
    EXPECT_TRUE(got.has_value()) << "the receive never completed";
    return got.value_or(Received{asio::error::timed_out, {}});
  }

  void send(const std::string& bytes) { asio::write(client_, asio::buffer(bytes)); }

  /// Lets the reactor see whatever edges the kernel raised meanwhile.
  void let_reactor_run() {
    std::this_thread::sleep_for(5ms);
    io_.restart();
    io_.poll();
  }

  asio::io_context io_;
  tcp::socket client_{io_};
  EdgeSocket server_{io_};
  std::string buffer_;
};

TEST_F(EdgeSocketTest, ShortReadsThenBytesThatArriveBeforeTheNextReceive) {
  send("ping");
  EXPECT_EQ(receive(128).bytes, "ping");  // short: the reactor stops trying
  send("pong");
  let_reactor_run();  // the edge comes while no receive is pending
  EXPECT_EQ(receive(128).bytes, "pong");
}

TEST_F(EdgeSocketTest, BytesThatArriveWhileTheReactorIsNotRunning) {
  send("one");
  EXPECT_EQ(receive(128).bytes, "one");
  send("two");  // the edge is still in epoll's ready list at the receive
  EXPECT_EQ(receive(128).bytes, "two");
}

TEST_F(EdgeSocketTest, BytesThatArriveAfterTheReceiveIsQueued) {
  send("first");
  EXPECT_EQ(receive(128).bytes, "first");
  buffer_.assign(128, '\0');
  std::optional<Received> got;
  server_.async_receive_edge(asio::buffer(buffer_),
                             [&](boost::system::error_code ec, std::size_t n) {
                               got = Received{ec, buffer_.substr(0, n)};
                             });
  io_.restart();
  io_.poll();
  EXPECT_FALSE(got.has_value()) << "nothing was sent yet";
  send("second");
  for (int i = 0; i < 200 && !got; ++i) io_.run_one_for(10ms);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->bytes, "second");
}

TEST_F(EdgeSocketTest, FullReadsLeaveTheRestForTheNextReceive) {
  std::string big;
  for (int i = 0; i < 1000; ++i) big += static_cast<char>('a' + i % 26);
  send(big);
  std::string got;
  while (got.size() < big.size()) {
    const Received r = receive(100);
    ASSERT_FALSE(r.ec) << r.ec.message();
    ASSERT_FALSE(r.bytes.empty());
    got += r.bytes;
  }
  EXPECT_EQ(got, big);
}

TEST_F(EdgeSocketTest, EndOfStreamAfterTheLastBytes) {
  send("bye");
  client_.shutdown(tcp::socket::shutdown_send);
  std::string got;
  Received r;
  for (int i = 0; i < 5; ++i) {
    r = receive(128);
    if (r.ec) break;
    got += r.bytes;
  }
  EXPECT_EQ(got, "bye");
  EXPECT_EQ(r.ec, asio::error::eof);
}

TEST_F(EdgeSocketTest, ClosingCancelsAPendingReceive) {
  buffer_.assign(16, '\0');
  std::optional<boost::system::error_code> got;
  server_.async_receive_edge(asio::buffer(buffer_),
                             [&](boost::system::error_code ec, std::size_t) { got = ec; });
  io_.poll();
  server_.close();
  io_.restart();
  io_.run_for(100ms);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, asio::error::operation_aborted);
}

}  // namespace
}  // namespace gatehouse::net
