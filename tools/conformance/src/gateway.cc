#include "gatehouse/conformance/gateway.h"

#include <algorithm>
#include <utility>

namespace gatehouse::conformance {

std::string packet(std::int16_t proto, std::string_view body) {
  std::string out;
  out.reserve(2 + body.size());
  const auto value = static_cast<std::uint16_t>(proto);
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value & 0xff));
  out.append(body);
  return out;
}

Gateway::Gateway(batch::BatchGameService::Stub& stub, std::string gateway_id,
                 std::chrono::milliseconds patience)
    : stub_(stub),
      id_(std::move(gateway_id)),
      patience_(patience),
      link_(std::make_unique<Link>(stub_, id_)) {}

std::unique_ptr<Link> Gateway::replace_link() {
  pump();
  acked_ = 0;
  return std::exchange(link_, std::make_unique<Link>(stub_, id_));
}

Event Gateway::open(std::uint64_t id) {
  Session& s = sessions_[id];
  s.user_id = 1000 + static_cast<std::int64_t>(id % 1'000'000);
  s.login_seq = next_login_seq_++;
  return reopen(id);
}

Event Gateway::reopen(std::uint64_t id) const {
  const Session& s = sessions_.at(id);
  Event e;
  e.set_session(id);
  e.set_kind(Event::OPEN);
  e.set_user_id(s.user_id);
  e.set_seq(s.login_seq);
  return e;
}

Event Gateway::message(std::uint64_t id, std::string_view bytes) {
  Event e;
  e.set_session(id);
  e.set_kind(Event::MESSAGE);
  e.set_message(std::string(bytes));
  e.set_seq(sessions_.at(id).next_seq++);
  return e;
}

Event Gateway::close(std::uint64_t id) {
  sessions_.at(id).open = false;
  Event e;
  e.set_session(id);
  e.set_kind(Event::CLOSE);
  return e;
}

bool Gateway::send(const std::vector<Event>& events) {
  if (auto_ack_) acked_ = link_->taken();
  return link_->write(events, acked_);
}

bool Gateway::ack(std::uint64_t count) {
  acked_ = count;
  return link_->write({}, acked_);
}

bool Gateway::restart(std::uint64_t resend_from) {
  pump();
  std::vector<Event> old = link_->sent();
  link_->cut();
  link_ = std::make_unique<Link>(stub_, id_);
  acked_ = 0;
  // As the bridge: every open session announced again first (start_link),
  // then what the rings still hold (the game had not acknowledged it).
  std::vector<Event> events;
  for (const auto& [id, s] : sessions_) {
    if (s.open) events.push_back(reopen(id));
  }
  for (std::size_t i = resend_from; i < old.size(); ++i) {
    if (old[i].kind() == Event::MESSAGE || old[i].kind() == Event::CLOSE) {
      events.push_back(std::move(old[i]));
    }
  }
  return link_->write(events, 0);
}

void Gateway::deliver(std::vector<Event> events) {
  for (Event& e : events) {
    if (e.kind() != Event::MESSAGE && e.kind() != Event::KICK) continue;  // the bridge ignores
    const auto it = sessions_.find(e.session());
    if (it == sessions_.end()) {
      fail("the game sent an event for session " + std::to_string(e.session()) +
           ", which this gateway-id never opened");
      continue;
    }
    Session& s = it->second;
    const std::uint64_t seq = e.seq();
    if (seq == 0 || (seq >> 32) == 0) {
      fail("the game sent session " + std::to_string(e.session()) + " an event with Event.seq " +
           std::to_string(seq) + " (needs epoch << 32 | n, a nonzero epoch and n from 1)");
    }
    // The workers' rule (agent-worker: is_replayed).
    if (seq != 0 && (seq >> 32) == (s.last_seq >> 32) && seq <= s.last_seq) {
      ++s.duplicates;
      continue;
    }
    if (seq != 0) s.last_seq = seq;
    if (s.kicked) {
      fail("the game sent session " + std::to_string(e.session()) + " an event after its KICK");
    }
    if (e.kind() == Event::KICK) {
      s.kicked = true;
      s.kick_seq = seq;
    } else {
      ++s.taken[e.message()];
      s.messages.push_back(std::move(*e.mutable_message()));
      s.seqs.push_back(seq);
    }
  }
}

void Gateway::pump() {
  if (!hold_) deliver(link_->take());
  if (const std::string v = link_->violation(); !v.empty()) fail(v);
  if (auto_ack_ && !link_->ended()) {
    // What was taken, not what arrived meanwhile: an ack lets the game
    // forget, and an event acknowledged but not taken would be lost.
    const std::uint64_t taken = link_->taken();
    if (taken > acked_) ack(taken);
  }
}

bool Gateway::wait_until(const std::function<bool()>& done, const std::string& what,
                         bool link_may_end) {
  return wait_until(done, what, patience_, link_may_end);
}

bool Gateway::wait_until(const std::function<bool()>& done, const std::string& what,
                         std::chrono::milliseconds bound, bool link_may_end) {
  const Clock::time_point deadline = Clock::now() + bound;
  for (;;) {
    const std::uint64_t seen = link_->received();
    pump();
    if (done()) return true;
    if (link_->ended() && !link_may_end) {
      const grpc::Status status = link_->status();
      fail("the game ended the link (code " + std::to_string(status.error_code()) + ": " +
           status.error_message() + ") while the kit waited for " + what);
      return false;
    }
    if (Clock::now() >= deadline) {
      fail("waited " +
           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(bound).count()) +
           " s in vain for " + what);
      return false;
    }
    link_->wait(deadline, seen);
  }
}

std::size_t Gateway::echoes(std::uint64_t id, std::string_view token) const {
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) return 0;
  const auto taken = it->second.taken.find(packet(kEchoReply, token));
  return taken == it->second.taken.end() ? 0 : taken->second;
}

std::string Gateway::failure() const {
  return failure_;
}

}  // namespace gatehouse::conformance
