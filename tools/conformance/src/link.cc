#include "gatehouse/conformance/link.h"

#include <algorithm>
#include <utility>

namespace gatehouse::conformance {

Link::Link(batch::BatchGameService::Stub& stub, const std::string& gateway_id) {
  if (!gateway_id.empty()) context_.AddMetadata("gateway-id", gateway_id);
  stream_ = stub.Batches(&context_);
  reader_ = std::thread([this] { read_loop(); });
}

Link::~Link() {
  cut();
  status();  // a call is finished, even a cancelled one
}

void Link::read_loop() {
  Batch batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !paused_; });
    }
    if (!stream_->Read(&batch)) break;
    std::lock_guard lock(mu_);
    ++batches_;
    if (violation_.empty() && batch.ack() > sent_count_) {
      violation_ = "Batch.ack " + std::to_string(batch.ack()) + " is above the " +
                   std::to_string(sent_count_) + " events sent on the link";
    }
    if (violation_.empty() && batch.ack() < peer_ack_) {
      violation_ = "Batch.ack went back from " + std::to_string(peer_ack_) + " to " +
                   std::to_string(batch.ack());
    }
    peer_ack_ = std::max(peer_ack_, batch.ack());
    received_ += static_cast<std::uint64_t>(batch.events_size());
    for (Event& e : *batch.mutable_events()) in_.push_back(std::move(e));
    cv_.notify_all();
  }
  std::lock_guard lock(mu_);
  ended_ = true;
  cv_.notify_all();
}

bool Link::write(const std::vector<Event>& events, std::uint64_t ack) {
  Batch batch;
  for (const Event& e : events) *batch.add_events() = e;
  batch.set_ack(ack);
  {
    // Counted before the write: the game may acknowledge before it returns.
    std::lock_guard lock(mu_);
    sent_count_ += events.size();
  }
  sent_.insert(sent_.end(), events.begin(), events.end());
  return stream_->Write(batch);
}

std::vector<Event> Link::take() {
  std::lock_guard lock(mu_);
  taken_ += in_.size();
  return std::exchange(in_, {});
}

std::uint64_t Link::taken() const {
  std::lock_guard lock(mu_);
  return taken_;
}

void Link::wait(Clock::time_point deadline, std::uint64_t seen) {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] { return received_ > seen || ended_; });
}

std::uint64_t Link::received() const {
  std::lock_guard lock(mu_);
  return received_;
}

std::uint64_t Link::peer_ack() const {
  std::lock_guard lock(mu_);
  return peer_ack_;
}

std::uint64_t Link::batches() const {
  std::lock_guard lock(mu_);
  return batches_;
}

std::string Link::violation() const {
  std::lock_guard lock(mu_);
  return violation_;
}

void Link::pause() {
  std::lock_guard lock(mu_);
  paused_ = true;
}

void Link::resume() {
  std::lock_guard lock(mu_);
  paused_ = false;
  cv_.notify_all();
}

bool Link::ended() const {
  std::lock_guard lock(mu_);
  return ended_;
}

void Link::cut() {
  if (!reader_.joinable()) return;
  context_.TryCancel();
  resume();  // a paused reader must see the cancel
  reader_.join();
}

grpc::Status Link::status() {
  if (reader_.joinable()) {
    resume();
    reader_.join();  // ended(): the reader is leaving
  }
  if (!status_) status_ = stream_->Finish();
  return *status_;
}

}  // namespace gatehouse::conformance
