// One Batches() call of the batched contract (proto/batch.proto), as the
// kit drives it: the main thread writes (blocking gRPC writes, one Batch
// each), a reader thread takes the game's Batches and keeps them for the
// main thread, which waits for what it expects (wait()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "batch.grpc.pb.h"

namespace gatehouse::conformance {

using batch::Batch;
using Event = batch::Event;
using Clock = std::chrono::steady_clock;

class Link {
 public:
  /// Opens the call with `gateway_id` as its metadata (none when empty).
  Link(batch::BatchGameService::Stub& stub, const std::string& gateway_id);
  /// Cuts the call if it is still up.
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  /// Writes one Batch: `events` and `ack` (the game's events we took); false
  /// once the call is broken. Each event gets the next link index.
  bool write(const std::vector<Event>& events, std::uint64_t ack);
  /// Our events on this link, by link index (what a bridge keeps until acked).
  const std::vector<Event>& sent() const { return sent_; }

  /// The game's events received and not yet taken by the caller, moved out.
  std::vector<Event> take();
  /// How many of the game's events take() has handed out: what we may
  /// acknowledge (received() may count more, arrived since).
  std::uint64_t taken() const;
  /// Waits until more than `seen` events were received, the call ended, or
  /// `deadline`.
  void wait(Clock::time_point deadline, std::uint64_t seen);
  /// How many of the game's events arrived on this link (our next ack).
  std::uint64_t received() const;
  /// The game's Batch.ack: how many of our events it has taken.
  std::uint64_t peer_ack() const;
  /// Batches the game wrote on this link.
  std::uint64_t batches() const;
  /// The first breach of the contract seen by the reader (an ack above what
  /// we sent, or going back), empty when none.
  std::string violation() const;

  /// Stops reading (the game's writes then meet gRPC flow control, as when
  /// a bridge's rings are full) until resume().
  void pause();
  void resume();

  /// The call ended (the game finished it, or it broke).
  bool ended() const;
  /// Cuts the call (a bridge killed: the game sees it cancelled) and waits
  /// for the reader; idempotent.
  void cut();
  /// Once ended() (or after cut()): the call's status.
  grpc::Status status();

 private:
  void read_loop();

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<Batch, Batch>> stream_;
  std::vector<Event> sent_;  // main thread
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  std::vector<Event> in_;
  std::uint64_t received_ = 0;
  std::uint64_t taken_ = 0;
  std::uint64_t peer_ack_ = 0;
  std::uint64_t sent_count_ = 0;  // for the reader's check of the ack
  std::uint64_t batches_ = 0;
  std::string violation_;
  bool ended_ = false;
  bool paused_ = false;
  // Main thread:
  std::optional<grpc::Status> status_;
  std::thread reader_;
};

}  // namespace gatehouse::conformance
