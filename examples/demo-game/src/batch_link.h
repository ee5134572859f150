// BatchLink: one Batches() call of the batched contract (proto/batch.proto),
// carrying many sessions (batch_session.h states the rules).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "batch_session.h"

namespace gatehouse::game::detail {

class BatchLink final : public AsyncCall, public std::enable_shared_from_this<BatchLink> {
 public:
  explicit BatchLink(Core& core) : core_(core) {}

  /// Asks for the next call of the service; the link keeps itself until the
  /// call is over (or none comes: shutdown).
  static void request(Core& core);

  // Under the GatewayState's mu:
  /// Queues `e` (moved from only when taken); false once the link is ending.
  /// When the queue is full the gateway does not read: as for a stream, the
  /// call is cancelled rather than the queue trimmed.
  bool send(BatchEvent& e);
  /// Queues a re-attached session's pending events, in order (emptying
  /// `events`); false, leaving them, once the link is ending.
  bool replay(std::deque<BatchEvent>& events);
  /// Stops the link for good (nothing more is written or taken; `cancel`:
  /// the call too): the events the gateway has not acknowledged, in write
  /// order; nullopt when it was detached already.
  std::optional<std::vector<BatchEvent>> detach_locked(bool cancel);

 private:
  /// The call arrived: becomes its gateway-id's link (the old one is
  /// detached and cancelled first), then reads.
  void start();
  void on_read(bool ok);
  void on_write(bool ok);
  /// The call is over and no operation of ours is in flight.
  void never_came() override;
  void accepted() override;
  void completed(Op op, bool ok) override;
  /// The call is over and no operation of ours is in flight.
  void over() override;
  // Each starts an operation (begin_op()); under mu_.
  void read_locked();
  void finish_locked();

  /// A written Batch kept until the gateway acknowledges all its events.
  struct Written {
    Batch batch;
    std::uint64_t first;  ///< the link index of its first event
  };

  void write_locked();
  /// After a write: keeps sending_ in written_ unless all acknowledged.
  void retain_sent_locked();
  /// The gateway's Batch.ack: frees what it covers; the sessions of the
  /// KICKs it covers go to `kicked`.
  void take_ack_locked(std::uint64_t ack, std::vector<std::uint64_t>& kicked);

  void dispatch(const BatchEvent& e);
  void open(const BatchEvent& e);
  void message(const BatchEvent& e);
  void close(const BatchEvent& e);
  /// Detaches the link (a private GatewayState: ends its sessions) and
  /// finishes the call once no write is in flight. Idempotent.
  void end_link();

  Core& core_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<Batch, Batch> stream_{&context_};
  Tag accept_tag_{this, Op::kAccept};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  Tag done_tag_{this, Op::kDone};
  std::shared_ptr<GatewayState> gateway_;  ///< set once, when the call arrives
  Batch in_;                               ///< owned by the read in flight
  std::mutex mu_;
  // Guarded by mu_:
  std::shared_ptr<BatchLink> self_;  ///< until over()
  Batch out_;                        ///< events waiting for the next write
  Batch sending_;                    ///< owned by the write in flight
  std::uint64_t sending_first_ = 0;  ///< link index of sending_'s first event
  std::deque<Written> written_;      ///< written, not all acknowledged, in order
  static constexpr std::size_t kSpareBatches = 4;
  std::vector<Batch> spares_;     ///< acknowledged batches, cleared, for reuse
  std::uint64_t next_index_ = 0;  ///< link index of the next event to write
  std::uint64_t acked_ = 0;       ///< our events the gateway acknowledged
  std::uint64_t read_ = 0;        ///< gateway events read (and dispatched)
  std::uint64_t ack_sent_ = 0;    ///< the last ack written
  bool writing_ = false;
  bool corked_ = false;  ///< a read batch is being dispatched
  bool ending_ = false;  ///< nothing more is taken
  bool detached_ = false;
  bool finished_ = false;
  bool started_ = false;  ///< start() took the link and started the read
  bool done_ = false;     ///< over() ran: the call is gone
};

}  // namespace gatehouse::game::detail
