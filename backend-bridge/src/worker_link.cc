#include "gatehouse/bridge/worker_link.h"

#include <grpcpp/support/status_code_enum.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "gatehouse/base/log.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/contract/shm_checks.h"

namespace gatehouse::bridge {
namespace {

// One client's huge chat broadcast comes back once per receiver.
LogLimit too_large_log{spdlog::level::warn, "game message too large"};
// A stopped or overloaded worker: once per second at most, whatever the
// number of calls and workers.
LogLimit paused_log{spdlog::level::warn, "game reads paused for a worker's backlog"};
LogLimit resumed_log{spdlog::level::info, "game reads resumed"};

}  // namespace

WorkerLink::WorkerLink(GatewaySegment& segment, std::uint32_t worker, std::uint32_t bridge,
                       shm::Doorbell doorbell, std::int64_t ack_timeout_ns,
                       const Settings& settings)
    : doorbell_(std::move(doorbell)),
      ack_timeout_ns_(ack_timeout_ns),
      records_(worker, settings, bridge),
      from_worker_(segment.ring(RingKind::kWorkerToBridge, worker, bridge)),
      replay_until_(from_worker_.taken_before_attach()),
      released_(from_worker_.position()),
      to_worker_(segment.ring(RingKind::kBridgeToWorker, worker, bridge), &doorbell_) {}

void WorkerLink::keep(std::uint64_t position, const std::shared_ptr<Acknowledger>& link,
                      std::uint64_t index) {
  if (!pending_.empty() && pending_.back().link == link && pending_.back().pass == pass_) {
    pending_.back().last_index = index;
  } else {
    pending_.push_back({position, link, index, pass_, now_ns_});
  }
}

/// Commits the worker ring's head up to the first record whose batched
/// events the game has not acknowledged; a link that broke releases its own
/// (it counted them lost).
void WorkerLink::release_acknowledged() {
  while (!pending_.empty() && pending_.front().link->releases(pending_.front().last_index)) {
    pending_.pop_front();
  }
  // A game that holds events unacknowledged stalls this worker's ring: after
  // a while its link is given up as broken (its events counted as dropped).
  // Not while the bridge itself holds the link's reads back (back-pressure):
  // its acknowledgements wait unread then.
  if (!pending_.empty() &&
      now_ns_ - std::max(pending_.front().since_ns, pending_.front().link->reading_since_ns()) >
          ack_timeout_ns_ &&
      pending_.front().link->abandon()) {
    spdlog::error(
        "game service link to {}: no acknowledgement for {} ms; cancelling the link (a batched "
        "game service must acknowledge what it reads, proto/batch.proto)",
        pending_.front().link->address(), ack_timeout_ns_ / 1'000'000);
  }
  const std::uint64_t head = pending_.empty() ? from_worker_.position() : pending_.front().position;
  if (head != released_) {
    from_worker_.commit(head);
    released_ = head;
  }
}

// ------------------------------------------------------------------ WorkerRings

WorkerRings::WorkerRings(std::vector<std::unique_ptr<WorkerLink>>& workers,
                         const Settings& settings, Wakeup& wakeup)
    : workers_(workers),
      settings_(settings),
      wakeup_(wakeup),
      bound_(settings.game_backlog_bytes) {}

void WorkerRings::message(Unpublished& unpublished, std::uint64_t conn, std::uint64_t seq,
                          std::string& bytes, ReplySource& from) {
  received_.fetch_add(1, std::memory_order_relaxed);
  // Copied from the parsed message straight into the ring: the message
  // keeps its string for the next parse (no allocation per event).
  deliver(unpublished, Reply{Reply::kMessage, conn, seq, 0}, std::as_bytes(std::span(bytes)),
          &bytes, &from);
}

void WorkerRings::kick(Unpublished& unpublished, std::uint64_t conn, ReplySource& from) {
  deliver(unpublished, Reply{Reply::kKick, conn, 0, 0}, {}, nullptr, &from);
}

void WorkerRings::ended(Unpublished& unpublished, std::uint64_t conn, std::int32_t grpc_code) {
  deliver(unpublished, Reply{Reply::kEnded, conn, 0, grpc_code}, {}, nullptr, nullptr);
}

void WorkerRings::verdict(Unpublished& unpublished, std::uint64_t conn, bool accepted) {
  deliver(unpublished, Reply{Reply::kVerdict, conn, 0, accepted ? 1 : 0}, {}, nullptr, nullptr);
}

void WorkerRings::replaced(Unpublished& unpublished, std::uint64_t conn) {
  deliver(unpublished, Reply{Reply::kReplaced, conn, 0, 0}, {}, nullptr, nullptr);
}

void WorkerRings::auth_verdict(Unpublished& unpublished, const ipc::AuthVerdict& verdict) {
  Reply reply{Reply::kAuthVerdict, verdict.conn};
  reply.user_id = verdict.user_id;
  reply.refusal = verdict.refusal;
  reply.claimed_user_id = verdict.claimed_user_id;
  deliver(unpublished, reply, {}, nullptr, nullptr);
}

void WorkerRings::deliver(Unpublished& unpublished, const Reply& reply,
                          std::span<const std::byte> bytes, std::string* movable,
                          ReplySource* from) {
  // A game's id names a slot of the table (and so a worker) or is dropped:
  // the worker would take a record for another slot as a violation.
  const std::optional<std::uint32_t> worker = worker_of(reply.conn, settings_);
  const std::uint32_t w = worker.value_or(static_cast<std::uint32_t>(workers_.size()));
  if (w >= workers_.size()) {  // not a session id this gateway ever gave out
    dropped_.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("game event for unknown session {:#x} dropped", reply.conn);
    return;
  }
  WorkerLink& link = *workers_[w];
  {
    std::lock_guard lock(link.produce_mutex_);
    // Behind whatever waits already, so that a session's events keep their
    // order (and a stream's end comes after its last message).
    if (link.backlog_.empty() && write(link, reply, bytes) != shm::WriteStatus::kFull) {
      unpublished.set(w);
      return;
    }
    // Held in this process now: counted, or not acknowledged, until written.
    // Kept even over the bound: it was read already (hold_reads() stops the
    // next read).
    if (from != nullptr) from->held();
    link.backlog_.push_back({reply, movable != nullptr ? std::move(*movable) : std::string(),
                             from != nullptr ? from->keep() : nullptr});
    link.backlog_bytes_.store(link.backlog_bytes_.load(std::memory_order_relaxed) +
                                  WorkerLink::cost(link.backlog_.back()),
                              std::memory_order_relaxed);
  }
  wakeup_.notify();  // the main thread retries the backlog
}

void WorkerRings::publish(const Unpublished& unpublished) {
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    if (!unpublished.test(w)) continue;
    std::lock_guard lock(workers_[w]->produce_mutex_);
    workers_[w]->to_worker_.publish();
  }
}

bool WorkerRings::hold_reads(std::uint64_t conn, const std::weak_ptr<PausedReads>& call) {
  if (conn != kEveryWorker) {
    const std::uint32_t w = worker_of_slot(shm::ConnectionId(conn).slot(), settings_);
    return w < workers_.size() && hold_on(w, call);
  }
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    if (hold_on(w, call)) return true;
  }
  return false;
}

bool WorkerRings::hold_on(std::uint32_t w, const std::weak_ptr<PausedReads>& call) {
  WorkerLink& link = *workers_[w];
  // The common case, no lock: far from the bound.
  if (link.backlog_bytes_.load(std::memory_order_relaxed) <= bound_) return false;
  std::size_t bytes = 0;
  bool first = false;
  {
    // Checked and registered under the lock flush_backlogs() resumes under,
    // so a call cannot pause just after its backlog's calls were resumed.
    std::lock_guard lock(link.produce_mutex_);
    bytes = link.backlog_bytes_.load(std::memory_order_relaxed);
    if (bytes <= bound_) return false;
    first = link.paused_.empty();
    link.paused_.push_back(call);
  }
  pauses_.fetch_add(1, std::memory_order_relaxed);
  if (first) {
    paused_log.log(
        "worker {}: {} bytes of game messages wait for room in its ring (game-backlog-bytes {}); "
        "the game calls that feed it stop reading until half of it is written",
        w, bytes, bound_);
  }
  return true;
}

std::size_t WorkerRings::flush_backlogs() {
  std::size_t work = 0;
  backlog_bytes_total_ = 0;
  backlog_events_total_ = 0;
  paused_total_ = 0;
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    WorkerLink& link = *workers_[w];
    {
      std::lock_guard lock(link.produce_mutex_);
      std::size_t bytes = link.backlog_bytes_.load(std::memory_order_relaxed);
      while (!link.backlog_.empty()) {
        WorkerLink::Waiting& e = link.backlog_.front();
        if (write(link, e.reply, std::as_bytes(std::span(e.bytes))) == shm::WriteStatus::kFull) {
          break;
        }
        bytes -= WorkerLink::cost(e);
        if (e.source) written_.push_back(std::move(e.source));
        link.backlog_.pop_front();
        ++work;
      }
      link.backlog_bytes_.store(bytes, std::memory_order_relaxed);
      link.to_worker_.publish();
      for (const auto& source : written_) source->released();  // published: ack or uncount them
      written_.clear();
      // The low-water mark: half the bound, so that a resumed call has room
      // for a while rather than pausing again at once.
      if (bytes <= bound_ / 2) {
        resuming_.swap(link.paused_);
      } else {
        std::erase_if(link.paused_, [](const auto& call) { return call.expired(); });
      }
      backlog_bytes_total_ += bytes;
      backlog_events_total_ += link.backlog_.size();
      paused_total_ += link.paused_.size();
    }
    // Outside the ring's lock: a resumed call may pause again (hold_reads()).
    if (!resuming_.empty()) {
      std::size_t resumed = 0;
      for (const auto& paused : resuming_) {
        if (const auto call = paused.lock()) {
          call->resume();
          ++resumed;
        }
      }
      resuming_.clear();
      if (resumed != 0) {
        resumed_log.log("worker {}: its game backlog drained; {} game calls read again", w,
                        resumed);
      }
    }
  }
  return work;
}

shm::WriteStatus WorkerRings::write(WorkerLink& link, const Reply& reply,
                                    std::span<const std::byte> bytes) {
  shm::WriteStatus status = shm::WriteStatus::kOk;
  switch (reply.kind) {
    case Reply::kMessage:
      status = ipc::write_record(link.to_worker_, ipc::kGameMessage,
                                 ipc::GameMessage{reply.conn, reply.seq}, bytes);
      break;
    case Reply::kKick:
      status = ipc::write_record(link.to_worker_, ipc::kGameKick, ipc::GameKick{reply.conn});
      break;
    case Reply::kEnded:
      status = ipc::write_record(link.to_worker_, ipc::kStreamEnded,
                                 ipc::StreamEnded{reply.conn, reply.grpc_code, 0});
      break;
    case Reply::kVerdict:
      status = ipc::write_record(
          link.to_worker_, ipc::kLoginVerdict,
          ipc::LoginVerdict{reply.conn, static_cast<std::uint32_t>(reply.grpc_code), 0});
      break;
    case Reply::kReplaced:
      status = ipc::write_record(link.to_worker_, ipc::kReplaced, ipc::Replaced{reply.conn});
      break;
    case Reply::kAuthVerdict:
      status = ipc::write_record(
          link.to_worker_, ipc::kAuthVerdict,
          ipc::AuthVerdict{reply.conn, reply.user_id, reply.refusal, reply.claimed_user_id, 0});
      break;
  }
  if (status == shm::WriteStatus::kTooLarge) {
    // Larger than any client frame; the worker would have to kick for it.
    ipc::write_record(
        link.to_worker_, ipc::kStreamEnded,
        ipc::StreamEnded{reply.conn, static_cast<std::int32_t>(grpc::RESOURCE_EXHAUSTED), 0});
    too_large_log.log("conn {:#x}: game message of {} bytes is too large", reply.conn,
                      bytes.size());
  }
  return status;
}

}  // namespace gatehouse::bridge
