// BatchLink: reading, writing and acknowledging a link's batches, and the
// gateway's events (OPEN, MESSAGE, CLOSE) on its sessions.
#include "batch_link.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "gatehouse/codec/game_link_limits.h"

namespace gatehouse::game::detail {

void BatchLink::request(Core& core) {
  const auto link = std::make_shared<BatchLink>(core);
  link->self_ = link;
  // Before the request: gRPC takes the done tag only with it.
  link->context_.AsyncNotifyWhenDone(&link->done_tag_);
  core.batch_service().RequestBatches(&link->context_, &link->stream_, &core.queue(), &core.queue(),
                                      &link->accept_tag_);
}

void BatchLink::never_came() {
  std::lock_guard lock(mu_);
  self_.reset();
}

void BatchLink::accepted() {
  request(core_);
  core_.call_began();
  start();
}

void BatchLink::completed(Op op, bool ok) {
  switch (op) {
    case Op::kRead:
      on_read(ok);
      return;
    case Op::kWrite:
      on_write(ok);
      return;
    case Op::kDone: {
      // Cancelled before start() took the link: the read it starts fails
      // and ends the link.
      bool started = false;
      {
        std::lock_guard lock(mu_);
        started = started_;
      }
      if (started && context_.IsCancelled()) end_link();
      return;
    }
    default:
      return;
  }
}

void BatchLink::read_locked() {
  begin_op();
  stream_.Read(&in_, &read_tag_);
}

void BatchLink::finish_locked() {
  finished_ = true;
  begin_op();
  stream_.Finish(grpc::Status::OK, &finish_tag_);
}

void BatchLink::start() {
  gateway_ = core_.gateway_of(context_);
  {
    std::lock_guard lock(gateway_->mu);
    // One link per gateway-id: the old one (a bridge that restarted before
    // its call failed here) hands its sessions over before we read.
    if (gateway_->link) detach_link_locked(*gateway_, gateway_->link, true);
    gateway_->link = shared_from_this();
  }
  std::lock_guard lock(mu_);
  read_locked();
  started_ = true;
}

bool BatchLink::send(BatchEvent& e) {
  std::lock_guard lock(mu_);
  if (ending_) return false;
  // Queued, or written and not acknowledged: a gateway that stops reading or
  // acknowledging must not grow this without bound.
  if (static_cast<std::size_t>(out_.events_size()) + (next_index_ - acked_) >=
      core_.max_queued_frames()) {
    ending_ = true;  // what is queued goes back to its sessions at end_link
    if (!done_) context_.TryCancel();
    return false;
  }
  *out_.add_events() = std::move(e);
  if (!writing_ && !corked_) write_locked();
  return true;
}

bool BatchLink::replay(std::deque<BatchEvent>& events) {
  std::lock_guard lock(mu_);
  if (ending_) return false;
  for (BatchEvent& e : events) out_.mutable_events()->Add(std::move(e));
  events.clear();
  if (!writing_ && !corked_ && out_.events_size() != 0) write_locked();
  return true;
}

std::optional<std::vector<BatchEvent>> BatchLink::detach_locked(bool cancel) {
  std::lock_guard lock(mu_);
  if (detached_) return std::nullopt;
  detached_ = true;
  ending_ = true;
  std::vector<BatchEvent> back;
  // The events from index acked_ on; the write in flight still reads its
  // batch, so that one is copied.
  const auto take = [&](Batch& batch, std::uint64_t first, bool in_flight) {
    const auto size = static_cast<std::uint64_t>(batch.events_size());
    for (std::uint64_t i = acked_ > first ? acked_ - first : 0; i < size; ++i) {
      BatchEvent& e = *batch.mutable_events(static_cast<int>(i));
      back.push_back(in_flight ? BatchEvent(e) : std::move(e));
    }
  };
  for (Written& w : written_) take(w.batch, w.first, false);
  if (writing_) take(sending_, sending_first_, true);
  take(out_, next_index_, false);
  written_.clear();
  out_.Clear();
  if (cancel && !done_) context_.TryCancel();
  return back;
}

void BatchLink::write_locked() {
  sending_.Swap(&out_);  // out_ gets the cleared previous batch
  // Cut by bytes: what does not fit one gRPC message goes in the next write
  // (on_write). A pushed message fits an Event alone (Core::fits), so each
  // write carries at least one event.
  game_link::cut_to_fit(sending_, out_);
  sending_first_ = next_index_;
  next_index_ += static_cast<std::uint64_t>(sending_.events_size());
  sending_.set_ack(read_);
  ack_sent_ = read_;
  writing_ = true;
  begin_op();
  stream_.Write(sending_, &write_tag_);
}

void BatchLink::retain_sent_locked() {
  const std::uint64_t end = sending_first_ + static_cast<std::uint64_t>(sending_.events_size());
  if (!detached_ && end > acked_) {
    written_.push_back({std::move(sending_), sending_first_});
    // A freed batch keeps its cleared events for reuse: the next batch
    // fills them instead of allocating an event and a string per event.
    if (!spares_.empty()) {
      sending_.Swap(&spares_.back());
      spares_.pop_back();
    }
  }
  sending_.Clear();
}

void BatchLink::take_ack_locked(std::uint64_t ack, std::vector<std::uint64_t>& kicked) {
  if (detached_) return;  // what it had is back with its sessions
  const std::uint64_t upto = std::min(ack, next_index_);
  if (upto <= acked_) return;
  const auto scan = [&](const Batch& batch, std::uint64_t first) {
    const auto size = static_cast<std::uint64_t>(batch.events_size());
    for (std::uint64_t i = acked_ > first ? acked_ - first : 0; i < size && first + i < upto; ++i) {
      const BatchEvent& e = batch.events(static_cast<int>(i));
      if (e.kind() == BatchEvent::KICK) kicked.push_back(e.session());
    }
  };
  for (const Written& w : written_) scan(w.batch, w.first);
  if (writing_) scan(sending_, sending_first_);  // only read: the write reads it too
  acked_ = upto;
  while (!written_.empty() && written_.front().first + static_cast<std::uint64_t>(
                                                           written_.front().batch.events_size()) <=
                                  acked_) {
    if (spares_.size() < kSpareBatches) {
      written_.front().batch.Clear();
      spares_.push_back(std::move(written_.front().batch));
    }
    written_.pop_front();
  }
}

void BatchLink::on_read(bool ok) {
  if (!ok) {
    end_link();
    return;
  }
  std::vector<std::uint64_t> kicked;
  {
    std::lock_guard lock(mu_);
    take_ack_locked(in_.ack(), kicked);
    // What the handler answers to this batch leaves in one write, after it.
    corked_ = true;
  }
  if (!kicked.empty()) {
    // The gateway has those KICKs: their zombies go, tombstoned.
    std::lock_guard lock(gateway_->mu);
    const Clock::time_point expiry = Clock::now() + gateway_->grace;
    for (const std::uint64_t session : kicked) {
      const auto it = gateway_->sessions.find(session);
      if (it == gateway_->sessions.end() || !it->second->zombie) continue;
      it->second->link.reset();
      gateway_->sessions.erase(it);
      gateway_->tombstones.put(session, true, expiry);
    }
  }
  for (const BatchEvent& e : in_.events()) dispatch(e);
  const auto events = static_cast<std::uint64_t>(in_.events_size());
  std::lock_guard lock(mu_);
  corked_ = false;
  read_ += events;
  // An ack alone only for a batch with events: never in answer to an ack.
  if (!writing_ && !ending_ && (out_.events_size() != 0 || (events != 0 && read_ > ack_sent_))) {
    write_locked();
  }
  if (!ending_) read_locked();
}

void BatchLink::on_write(bool ok) {
  {
    std::lock_guard lock(mu_);
    writing_ = false;
    retain_sent_locked();
    if (!ok) ending_ = true;  // the call is broken; end_link takes back what is unacknowledged
    if (!ending_) {
      // The ack that was due while this write was in flight goes now.
      if (out_.events_size() != 0 || read_ > ack_sent_) write_locked();
    } else if (!finished_) {
      finish_locked();
    }
  }
  if (!ok) end_link();
}

void BatchLink::over() {
  end_link();  // detached at the latest now; finished already
  std::shared_ptr<BatchLink> self;
  {
    std::lock_guard lock(mu_);
    done_ = true;
    self = std::move(self_);
  }
  Core& core = core_;
  self.reset();  // may be the last reference: after the lock
  core.call_ended();
}

void BatchLink::dispatch(const BatchEvent& e) {
  switch (e.kind()) {
    case BatchEvent::OPEN:
      open(e);
      return;
    case BatchEvent::MESSAGE:
      message(e);
      return;
    case BatchEvent::CLOSE:
      close(e);
      return;
    default:
      return;  // KICK from a gateway means nothing
  }
}

void BatchLink::open(const BatchEvent& e) {
  GatewayState& gateway = *gateway_;
  {
    std::lock_guard lock(gateway.mu);
    if (gateway.link.get() != this) return;            // replaced: the gateway sends it again
    if (gateway.tombstones.find(e.session())) return;  // closed: a late OPEN
    const auto it = gateway.sessions.find(e.session());
    if (it != gateway.sessions.end()) {
      // Re-attached after a bridge restart: the same session (a zombie
      // too), which gets what the gateway has not had first.
      BatchSession& session = *it->second;
      if (session.link.get() == this) return;                             // a repeated OPEN
      if (session.link) detach_link_locked(gateway, session.link, true);  // an older link
      session.link = shared_from_this();
      replay(session.pending);  // when this link is ending, they stay for the next one
      return;
    }
  }
  if (e.user_id() < INT32_MIN || e.user_id() > INT32_MAX) return;
  const auto session = std::make_shared<BatchSession>(core_, gateway_, e.session(),
                                                      static_cast<std::int32_t>(e.user_id()));
  // Held until on_open returned: nobody's on_end (a kick from another thread)
  // comes before it.
  std::unique_lock serial(session->dispatch_mu);
  {
    const std::unique_lock registry = core_.lock_registry();
    std::lock_guard lock(gateway.mu);
    if (gateway.link.get() != this || gateway.tombstones.find(e.session()) ||
        gateway.sessions.contains(e.session())) {
      return;
    }
    if (const std::uint64_t* sent = gateway.forgotten.find(e.session())) {
      session->sent = *sent;
      gateway.forgotten.erase(e.session());
    }
    if (!core_.add_locked(*session)) return;  // shutting down
    session->link = shared_from_this();
    gateway.sessions.emplace(e.session(), session);
  }
  call_handler(std::move(serial), [&] { core_.handler().on_open(session->handle()); });
}

void BatchLink::message(const BatchEvent& e) {
  std::shared_ptr<BatchSession> session;
  {
    std::lock_guard lock(gateway_->mu);
    if (gateway_->link.get() != this) return;
    const auto it = gateway_->sessions.find(e.session());
    if (it == gateway_->sessions.end()) return;  // not (or no more) a session here
    session = it->second;
  }
  std::unique_lock serial(session->dispatch_mu);
  {
    std::lock_guard lock(gateway_->mu);
    if (gateway_->link.get() != this || session->ended) return;
    if (e.seq() != 0) {
      if (e.seq() <= session->last_seq) return;  // had it before the bridge restarted
      session->last_seq = e.seq();
    }
  }
  const std::string& bytes = e.message();
  call_handler(std::move(serial), [&] {
    core_.handler().on_message(session->handle(),
                               {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
  });
}

void BatchLink::close(const BatchEvent& e) {
  std::shared_ptr<BatchSession> ended;
  {
    const std::unique_lock registry = core_.lock_registry();
    std::lock_guard lock(gateway_->mu);
    if (gateway_->link.get() != this) return;
    const auto it = gateway_->sessions.find(e.session());
    if (it == gateway_->sessions.end()) return;
    const std::shared_ptr<BatchSession> session = it->second;
    gateway_->sessions.erase(it);
    gateway_->tombstones.put(e.session(), true, Clock::now() + gateway_->grace);
    session->link.reset();
    if (session->end_locked()) ended = session;  // not a zombie
  }
  if (ended) ended->retire(true);
}

void BatchLink::end_link() {
  std::vector<std::shared_ptr<BatchSession>> ended;
  {
    std::unique_lock<std::mutex> registry;
    if (!gateway_->shared) registry = core_.lock_registry();
    std::lock_guard lock(gateway_->mu);
    detach_link_locked(*gateway_, shared_from_this(), false);
    if (!gateway_->shared) {
      // Nobody re-attaches these: they end with the link.
      for (const auto& [id, session] : gateway_->sessions) {
        if (session->end_locked()) ended.push_back(session);
      }
      gateway_->sessions.clear();
    }
  }
  {
    std::lock_guard lock(mu_);
    if (!writing_ && !finished_ && !done_) finish_locked();
  }
  for (const auto& session : ended) session->retire(false);
}

}  // namespace gatehouse::game::detail
