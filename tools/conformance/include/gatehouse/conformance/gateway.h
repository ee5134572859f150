// The kit's model of a gateway's backend-bridge on the batched contract
// (proto/batch.proto, docs/batch-contract.md): one gateway-id's session
// space, its current link, and the rules the bridge and the workers apply:
//   - our MESSAGEs carry a seq strictly increasing per session (the client's
//     packet seq), from 1;
//   - the game's MESSAGE/KICK are taken once per (epoch, n): one whose seq
//     has the epoch of, and is not above, the session's last one is a
//     duplicate and dropped (counted), as the workers drop it;
//   - we acknowledge the game's events once taken (auto_ack), or hold the
//     ack back to play a bridge that crashed before it acknowledged;
//   - a restart cuts the link and opens a new one of the same gateway-id,
//     sends OPEN for every open session, then re-sends our events the game
//     had not acknowledged (or more: a bridge whose ack was lost).
// Whatever breaks the contract on the way is kept as the first violation.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "gatehouse/conformance/link.h"

namespace gatehouse::conformance {

/// The demo protocol's numbers the kit relies on (examples/demo-game).
inline constexpr std::int16_t kEchoRequest = 1001;
inline constexpr std::int16_t kEchoReply = 1002;
inline constexpr std::int16_t kKickMe = 1005;

/// `| proto i16 BE | body |`.
std::string packet(std::int16_t proto, std::string_view body);

struct Session {
  std::int64_t user_id = 0;
  std::uint64_t login_seq = 0;
  bool open = true;                                    ///< no CLOSE sent
  std::uint64_t next_seq = 1;                          ///< of our next MESSAGE
  std::uint64_t last_seq = 0;                          ///< of the game's last event taken
  std::vector<std::string> messages;                   ///< the game's MESSAGEs taken, in order
  std::vector<std::uint64_t> seqs;                     ///< their Event.seq
  std::unordered_map<std::string, std::size_t> taken;  ///< how often each message was
  bool kicked = false;                                 ///< a KICK was taken
  std::uint64_t kick_seq = 0;
  std::uint64_t duplicates = 0;  ///< the game's events dropped by seq
};

class Gateway {
 public:
  Gateway(batch::BatchGameService::Stub& stub, std::string gateway_id,
          std::chrono::milliseconds patience);

  const std::string& id() const { return id_; }
  Link& link() { return *link_; }
  /// A new link of this gateway-id; the current one, if any, is kept open
  /// (a restarted bridge whose old call the game has not seen fail yet).
  std::unique_ptr<Link> replace_link();

  /// OPEN events for new sessions (user ids from 1000 + `id`).
  Event open(std::uint64_t id);
  /// The OPEN of a session opened before, again (a re-attach, or a late
  /// one after its CLOSE); changes nothing here.
  Event reopen(std::uint64_t id) const;
  /// A MESSAGE with the session's next seq.
  Event message(std::uint64_t id, std::string_view bytes);
  Event echo(std::uint64_t id, std::string_view token) {
    return message(id, packet(kEchoRequest, token));
  }
  /// CLOSE: the session ends here (the game's later events for it are late).
  Event close(std::uint64_t id);

  /// Writes `events` in one Batch with our ack (when auto_ack); false when
  /// the link is broken.
  bool send(const std::vector<Event>& events);
  /// An ack-only Batch acknowledging `count` of the game's events.
  bool ack(std::uint64_t count);
  void set_auto_ack(bool on) { auto_ack_ = on; }
  /// While held, pump() leaves the game's events on the link (the caller
  /// takes them: to lose them, as a bridge killed before it wrote them).
  void set_hold(bool on) { hold_ = on; }
  /// Takes `events` as the bridge and the workers take the game's events.
  void deliver(std::vector<Event> events);

  /// A bridge restart: cuts the link, opens a new one, sends OPEN for every
  /// open session, then re-sends the old link's MESSAGE and CLOSE events
  /// from link index `resend_from` on (the game's ack: nothing lost; less:
  /// events it had processed come again). True when the writes went out.
  bool restart(std::uint64_t resend_from);
  /// The same, re-sending what the game had not acknowledged.
  bool restart() { return restart(link_->peer_ack()); }

  /// Takes the game's events from the current link (and acks them when
  /// auto_ack).
  void pump();
  /// Pumps until `done()` or `bound` (default: the patience); false, with
  /// failure() saying why, on timeout or when the link ends (unless
  /// `link_may_end`).
  bool wait_until(const std::function<bool()>& done, const std::string& what,
                  bool link_may_end = false);
  bool wait_until(const std::function<bool()>& done, const std::string& what,
                  std::chrono::milliseconds bound, bool link_may_end);

  Session& session(std::uint64_t id) { return sessions_.at(id); }
  /// How often the game's echo of `token` was taken for session `id`.
  std::size_t echoes(std::uint64_t id, std::string_view token) const;

  /// The first breach of the contract seen (on any link), or of the wait.
  std::string failure() const;
  void fail(std::string reason) {
    if (failure_.empty()) failure_ = std::move(reason);
  }

 private:
  batch::BatchGameService::Stub& stub_;
  const std::string id_;
  const std::chrono::milliseconds patience_;
  std::unique_ptr<Link> link_;
  std::map<std::uint64_t, Session> sessions_;
  std::uint64_t acked_ = 0;  ///< the last ack we wrote on the current link
  bool auto_ack_ = true;
  bool hold_ = false;
  std::uint64_t next_login_seq_ = 1;
  std::string failure_;
};

}  // namespace gatehouse::conformance
