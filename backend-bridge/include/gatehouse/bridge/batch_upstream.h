// The batched contract (proto/batch.proto, `--backend batch:HOST:PORT`): one
// long-lived link per game service carrying every session's events.
//
// open() / send() / close() become OPEN / MESSAGE / CLOSE events on the
// link, all of one duty-cycle pass in one gRPC write (flush()); MESSAGE /
// KICK events from the game go from the gRPC thread straight to
// UpstreamEvents. A link that breaks is re-opened with backoff (50 ms
// doubling to 2 s) and re-announces (OPEN) every session it carried:
// sessions wait for their game service, they are not kicked, unless it stays
// away longer than --backend-wait (a rebind service's sessions do not wait:
// they move to another instance, Options::sessions_move).
//
// Nothing on a link is lost to a bridge crash: the records behind the events
// the game has not acknowledged stay in the worker rings (RecordKeeper: the
// ring head is committed only up to the first of them) and a new bridge
// sends them again; the game acknowledges and re-sends its own side
// likewise, and the workers drop what they delivered already. When a link
// breaks while the bridge lives, what the game had not acknowledged is
// released and counted as dropped.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "batch.grpc.pb.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/bridge/call_on_queue.h"
#include "gatehouse/bridge/upstream.h"
#include "gatehouse/contract/metrics.h"

namespace gatehouse::bridge {

class BatchUpstream final : public Upstream {
 public:
  struct Options {
    std::string address;  ///< HOST:PORT
    /// Names our session space to the game (`gateway-id` metadata).
    std::string gateway_id;
    std::int64_t backend_wait_ns = 60'000'000'000;
    /// A rebind service's (game_services.h): when the link breaks, its
    /// sessions do not wait for it: each is told unavailable at once
    /// (UpstreamEvents::ended), which moves it to another instance.
    bool sessions_move = false;
  };
  /// Starts the link. Everything given here outlives this.
  BatchUpstream(Options options, CallQueue& calls, UpstreamEvents& events, Wakeup& wakeup,
                InstanceMetrics& metrics);
  /// Cancels its link and waits for the calls to end.
  ~BatchUpstream() override;

  bool open(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
            const Origin* origin) override;
  void send(std::uint64_t conn, std::uint64_t seq, std::span<const std::byte> message,
            const Origin& origin) override;
  void close(std::uint64_t conn, const Origin& origin) override;
  std::size_t flush(std::int64_t now_ns) override;
  /// A CLOSE goes on the link in order, before any later OPEN: the game has
  /// the session's end before anything that follows it.
  bool has_call(std::uint64_t conn) const override { return sessions_.contains(conn); }
  void cancel(std::uint64_t) override {}
  void close_all() override;
  void cancel_all() override;
  std::size_t calls_open() const override { return link_ ? 1 : 0; }
  bool calls_over() const override { return calls_.queue().calls_live(calls_) == 0; }
  std::uint64_t unacknowledged() const override;
  /// Its link is up on a connected channel and has held for a second since
  /// it last broke (a game that ends every link at once is not reachable).
  bool reachable() override;
  void move_to(const std::string& address) override;

  /// How long a game service may leave events unacknowledged.
  static std::int64_t ack_timeout_ns(std::int64_t backend_wait_ns) noexcept {
    return std::min<std::int64_t>(backend_wait_ns, 10'000'000'000);
  }

 private:
  class BatchLink;

  /// One Batch from the game (the gRPC thread).
  void deliver(BatchLink& from, batch::Batch& in);
  /// Queues one event on the link; false when it is down.
  bool send_event(const Origin* origin, batch::Event::Kind kind, std::uint64_t conn,
                  std::span<const std::byte> message, std::int64_t user_id = 0,
                  std::uint64_t seq = 0);
  /// Kicks the session (backend_unavailable).
  void unavailable(std::uint64_t conn);
  void start_link();
  void link_ended(std::int64_t now_ns);
  void relink_if_due(std::int64_t now_ns);
  void give_up_sessions();
  /// Ends every session here, each told unavailable (not re-announced).
  void drop_sessions();

  Options options_;  // address: main thread (move_to)
  CallGroup calls_;
  UpstreamEvents& events_;
  Wakeup& wakeup_;
  InstanceMetrics& metrics_;
  std::shared_ptr<grpc::Channel> channel_;               // to options_.address
  std::unique_ptr<batch::BatchGameService::Stub> stub_;  // on channel_
  std::shared_ptr<BatchLink> link_;                      // null while down
  std::shared_ptr<Acknowledger> link_acks_;              // the same link, for the worker rings
  std::int64_t relink_due_ns_ = 0;
  std::uint32_t relink_backoff_ms_ = 50;
  std::int64_t down_since_ns_ = 0;  // since the link broke, until a new one holds
  std::int64_t link_started_ns_ = 0;
  bool stopping_ = false;
  bool moving_ = false;  // the link was cancelled by move_to(): not a failure
  struct Attached {
    std::int64_t user_id;
    std::uint64_t login_seq;
  };
  std::unordered_map<std::uint64_t, Attached> sessions_;  // by conn
  std::atomic<std::uint64_t> batches_received_{0};        // by the gRPC thread

  /// The sessions this link serves, for the gRPC thread: a game may message
  /// or kick only those (sessions go to a backend by user id), never another
  /// backend's. By slot, the last session opened here in it, and whether it
  /// is still open (a closed one's late events are not foreign); bounded by
  /// the session table's slots.
  struct Served {
    std::uint64_t conn;
    bool open;
  };
  /// Marks `conn` open or closed here (main thread).
  void serve(std::uint64_t conn, bool open);
  std::mutex served_mu_;
  std::unordered_map<std::uint32_t, Served> served_;  // guarded by served_mu_
  LogLimit foreign_log_{spdlog::level::warn, "batched event for another backend's session"};
  std::atomic<std::uint64_t> foreign_{0};  // by the gRPC thread
  std::atomic<std::uint64_t> late_{0};     // by the gRPC thread
};

}  // namespace gatehouse::bridge
