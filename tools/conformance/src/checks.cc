// Each check is a scene of the bridge's life against the game service: it
// makes a Gateway (a gateway-id of its own, so that checks do not see each
// other's sessions), plays the scene, and judges by the echoes taken, the
// acks and how links end. Negative checks (something must NOT happen) use a
// barrier, never a sleep: an echo asked for after the event under test, on
// the same link, which a game answers after it has handled what it read
// before (the contract's ordering, docs/batch-contract.md "Ordering").
#include "gatehouse/conformance/checks.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "batch.grpc.pb.h"
#include "gatehouse/codec/game_link_limits.h"
#include "gatehouse/conformance/gateway.h"

namespace gatehouse::conformance {
namespace {

using namespace std::chrono_literals;

/// What every check gets: the channels and a unique name for its gateway-id.
class Context {
 public:
  explicit Context(const Options& options)
      : options_(options),
        run_id_("conformance-" + std::to_string(::getpid()) + "-" +
                std::to_string(std::chrono::system_clock::now().time_since_epoch().count())),
        stub_(batch::BatchGameService::NewStub(channel(true))),
        unlimited_stub_(batch::BatchGameService::NewStub(channel(false))) {}

  const Options& options() const { return options_; }
  /// A gateway on the bridge's channel limits (4 MiB each way).
  std::unique_ptr<Gateway> gateway(const std::string& check) {
    return std::make_unique<Gateway>(*stub_, run_id_ + "/" + check, options_.patience);
  }
  /// One whose sends are not limited (to send what a bridge never would).
  std::unique_ptr<Gateway> unlimited_gateway(const std::string& check) {
    return std::make_unique<Gateway>(*unlimited_stub_, run_id_ + "/" + check, options_.patience);
  }
  bool connect() {
    return stub_channel_->WaitForConnected(std::chrono::system_clock::now() + options_.patience);
  }

 private:
  std::shared_ptr<grpc::Channel> channel(bool limited) {
    grpc::ChannelArguments args;
    // As the bridge's game_channel(): the contract's size limit, explicit.
    args.SetMaxReceiveMessageSize(static_cast<int>(game_link::kMaxMessageBytes));
    args.SetMaxSendMessageSize(limited ? static_cast<int>(game_link::kMaxMessageBytes) : -1);
    // Its own connection each: a link failed on purpose leaves the other.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto c = grpc::CreateCustomChannel(options_.target, grpc::InsecureChannelCredentials(), args);
    if (limited) stub_channel_ = c;
    return c;
  }

  const Options& options_;
  const std::string run_id_;
  std::shared_ptr<grpc::Channel> stub_channel_;
  std::unique_ptr<batch::BatchGameService::Stub> stub_;
  std::unique_ptr<batch::BatchGameService::Stub> unlimited_stub_;
};

using Tokens = std::vector<std::string>;

Tokens tokens(const std::string& prefix, std::size_t from, std::size_t to) {
  Tokens out;
  for (std::size_t i = from; i <= to; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

std::vector<Event> echoes_of(Gateway& g, std::uint64_t session, const Tokens& ts) {
  std::vector<Event> out;
  out.reserve(ts.size());
  for (const std::string& t : ts) out.push_back(g.echo(session, t));
  return out;
}

/// Asks for the echo of each token, `per_batch` of them in each Batch.
void send_echoes(Gateway& g, std::uint64_t session, const Tokens& ts, std::size_t per_batch) {
  for (std::size_t from = 0; from < ts.size(); from += per_batch) {
    const auto first = ts.begin() + static_cast<std::ptrdiff_t>(from);
    g.send(echoes_of(
        g, session,
        Tokens(first, first + static_cast<std::ptrdiff_t>(std::min(per_batch, ts.size() - from)))));
  }
}

/// Waits until every token's echo was taken on `session`.
bool wait_echoes(Gateway& g, std::uint64_t session, const Tokens& ts, const std::string& what) {
  return g.wait_until(
      [&] {
        return std::all_of(ts.begin(), ts.end(),
                           [&](const std::string& t) { return g.echoes(session, t) != 0; });
      },
      what + " (session " + std::to_string(session) + ")");
}

/// Each token's echo taken exactly once, and in the tokens' order.
void expect_once_in_order(Gateway& g, std::uint64_t session, const Tokens& ts) {
  for (const std::string& t : ts) {
    if (const std::size_t n = g.echoes(session, t); n != 1) {
      g.fail("the echo of '" + t + "' was taken " + std::to_string(n) +
             " times: a MESSAGE was processed " + (n == 0 ? "never" : "more than once"));
      return;
    }
  }
  std::unordered_map<std::string, const std::string*> replies;
  for (const std::string& t : ts) replies.emplace(packet(kEchoReply, t), &t);
  std::vector<std::string> seen;
  for (const std::string& m : g.session(session).messages) {
    if (const auto it = replies.find(m); it != replies.end()) seen.push_back(*it->second);
  }
  if (seen != ts) g.fail("the echoes of session " + std::to_string(session) + " came out of order");
}

Result verdict(const Gateway& g, std::string pass_detail) {
  const std::string failure = g.failure();
  if (failure.empty()) return {{}, true, std::move(pass_detail)};
  return {{}, false, failure};
}

// --- the checks -----------------------------------------------------------

Result check_echo(Context& c) {
  auto g = c.gateway("echo");
  g->send({g->open(1), g->echo(1, "hello")});
  if (wait_echoes(*g, 1, {"hello"}, "echo of a 1001 message"))
    expect_once_in_order(*g, 1, {"hello"});
  return verdict(*g, "1001 'hello' -> 1002 'hello' on the session, Event.seq = epoch << 32 | n");
}

Result check_ack(Context& c) {
  auto g = c.gateway("ack");
  g->send({g->open(1)});
  for (int b = 0; b < 20; ++b) g->send({g->echo(1, "a" + std::to_string(b))});
  const std::uint64_t sent = g->link().sent().size();
  // The gateway cancels a link whose events stay unacknowledged this long.
  g->wait_until([&] { return g->link().peer_ack() >= sent; },
                "Batch.ack covering the " + std::to_string(sent) + " events sent",
                std::chrono::milliseconds(10s), false);
  return verdict(*g, "Batch.ack reached " + std::to_string(sent) + " within 10 s, never above");
}

Result check_order(Context& c) {
  auto g = c.gateway("order");
  g->send({g->open(1)});
  const Tokens ts = tokens("o", 1, 300);
  send_echoes(*g, 1, ts, 50);
  if (wait_echoes(*g, 1, ts, "echoes of 300 messages")) expect_once_in_order(*g, 1, ts);
  return verdict(*g, "300 messages in 6 batches: 300 echoes, in order");
}

Result check_sessions(Context& c) {
  auto g = c.gateway("sessions");
  const std::size_t n = c.options().sessions;
  std::vector<Event> batch;
  for (std::uint64_t s = 1; s <= n; ++s) {
    batch.push_back(g->open(s));
    batch.push_back(g->echo(s, "s" + std::to_string(s)));
    if (batch.size() >= 500 || s == n) g->send(std::exchange(batch, {}));
  }
  g->wait_until(
      [&] {
        for (std::uint64_t s = 1; s <= n; ++s) {
          if (g->echoes(s, "s" + std::to_string(s)) == 0) return false;
        }
        return true;
      },
      "an echo on each of " + std::to_string(n) + " sessions");
  for (std::uint64_t s = 1; s <= n && g->failure().empty(); ++s) {
    if (g->session(s).messages.size() != 1 || g->echoes(s, "s" + std::to_string(s)) != 1) {
      g->fail("session " + std::to_string(s) + " got " +
              std::to_string(g->session(s).messages.size()) +
              " messages, not its one echo (crossed sessions?)");
    }
  }
  return verdict(*g, std::to_string(n) + " sessions on one link: each its own echo, once");
}

Result check_open_twice(Context& c) {
  auto g = c.gateway("open-twice");
  g->send({g->open(1), g->echo(1, "first")});
  if (!wait_echoes(*g, 1, {"first"}, "echo before the repeated OPEN")) return verdict(*g, {});
  g->send({g->reopen(1), g->echo(1, "second")});
  if (wait_echoes(*g, 1, {"second"}, "echo after a repeated OPEN")) {
    expect_once_in_order(*g, 1, {"first", "second"});
  }
  return verdict(*g, "an OPEN of a live session keeps it, its numbering going on");
}

Result check_gateways_apart(Context& c) {
  auto x = c.gateway("apart-x");
  auto y = c.gateway("apart-y");
  x->send({x->open(7), x->echo(7, "x")});
  y->send({y->open(7), y->echo(7, "y")});
  wait_echoes(*x, 7, {"x"}, "echo on gateway-id X");
  wait_echoes(*y, 7, {"y"}, "echo on gateway-id Y");
  // Closing X's session 7 leaves Y's.
  x->send({x->close(7)});
  y->send({y->echo(7, "y2")});
  wait_echoes(*y, 7, {"y2"}, "echo on Y's session 7 after X closed its own");
  if (x->echoes(7, "y") + y->echoes(7, "x") != 0) x->fail("an echo went to the other gateway-id");
  if (!y->failure().empty()) return verdict(*y, {});
  return verdict(*x, "session 7 of two gateway-ids: two sessions, apart");
}

Result check_restart_duplicates(Context& c) {
  auto g = c.gateway("restart-duplicates");
  const Tokens before = tokens("d", 1, 5);
  std::vector<Event> batch{g->open(1)};
  for (Event& e : echoes_of(*g, 1, before)) batch.push_back(std::move(e));
  g->send(batch);
  if (!wait_echoes(*g, 1, before, "echoes before the restart")) return verdict(*g, {});
  // A bridge that died after the game's ack was sent, before it arrived:
  // the new one sends every MESSAGE again, with the same seq.
  g->restart(0);
  g->send({g->echo(1, "d6")});
  Tokens all = before;
  all.emplace_back("d6");
  if (wait_echoes(*g, 1, {"d6"}, "echo after the restart")) expect_once_in_order(*g, 1, all);
  return verdict(*g, "5 MESSAGEs the game had processed, re-sent on a new link: dropped");
}

/// The game's events taken off the link but never acknowledged, which a
/// bridge killed before writing them to shared memory loses.
std::vector<Event> lose_unacknowledged(Gateway& g, std::uint64_t count, const std::string& what) {
  if (!g.wait_until([&] { return g.link().received() >= count; }, what)) return {};
  return g.link().take();
}

Result check_restart_replay(Context& c) {
  auto g = c.gateway("restart-replay");
  g->set_auto_ack(false);
  g->set_hold(true);
  const Tokens ts = tokens("r", 1, 4);
  std::vector<Event> batch{g->open(1)};
  for (Event& e : echoes_of(*g, 1, ts)) batch.push_back(std::move(e));
  g->send(batch);
  const std::vector<Event> lost = lose_unacknowledged(*g, 4, "4 echoes (not acknowledged)");
  if (lost.size() < 4) return verdict(*g, {});
  g->restart();  // before acking anything again: the ack died with the bridge
  g->set_hold(false);
  g->set_auto_ack(true);
  g->send({g->echo(1, "r5")});
  Tokens all = ts;
  all.emplace_back("r5");
  if (wait_echoes(*g, 1, all, "the 4 unacknowledged echoes again, then a new one")) {
    expect_once_in_order(*g, 1, all);
    const auto& seqs = g->session(1).seqs;
    for (std::size_t i = 0; i < 4 && g->failure().empty(); ++i) {
      if (seqs[i] != lost[i].seq()) g->fail("a re-sent event has another Event.seq than before");
    }
  }
  return verdict(*g, "unacknowledged echoes re-sent on re-attach, same seq, before new ones");
}

Result check_late_ack(Context& c) {
  auto g = c.gateway("late-ack");
  g->set_auto_ack(false);
  g->set_hold(true);
  const Tokens first = tokens("l", 1, 6);
  std::vector<Event> batch{g->open(1)};
  for (Event& e : echoes_of(*g, 1, first)) batch.push_back(std::move(e));
  g->send(batch);
  std::vector<Event> got = lose_unacknowledged(*g, 6, "6 echoes (not acknowledged)");
  if (got.size() < 6) return verdict(*g, {});
  // The ack comes late (all 6 were out) and covers 3: the bridge wrote only
  // those to shared memory before it died.
  got.resize(3);
  g->deliver(std::move(got));
  g->ack(3);
  g->send({g->echo(1, "l7")});  // carries the ack 3: the game has it before l7
  if (lose_unacknowledged(*g, 7, "the echo of l7 (not acknowledged)").empty()) {
    return verdict(*g, {});
  }
  g->restart();  // before acking anything again: the ack died with the bridge
  g->set_hold(false);
  g->set_auto_ack(true);
  g->send({g->echo(1, "l8")});
  const Tokens all = tokens("l", 1, 8);
  if (wait_echoes(*g, 1, all, "echoes 4..7 again, then 8")) expect_once_in_order(*g, 1, all);
  const std::uint64_t resent_acked = g->session(1).duplicates;
  return verdict(*g, "a late, partial ack: the 4 echoes after it re-sent" +
                         (resent_acked != 0 ? " (and " + std::to_string(resent_acked) +
                                                  " acknowledged ones, dropped)"
                                            : std::string()));
}

Result check_cut_mid_batch(Context& c) {
  auto g = c.gateway("cut-mid-batch");
  g->send({g->open(1)});
  const Tokens ts = tokens("c", 1, 200);
  send_echoes(*g, 1, ts, 50);
  // Cut while the game reads and answers them; the new link carries what it
  // had not acknowledged (some of which it may have processed).
  g->restart();
  if (wait_echoes(*g, 1, ts, "the 200 echoes across the cut")) expect_once_in_order(*g, 1, ts);
  return verdict(*g, "a link cut under 200 messages: each echoed once, in order");
}

Result check_link_replaced(Context& c) {
  auto g = c.gateway("link-replaced");
  g->send({g->open(1), g->echo(1, "old")});
  if (!wait_echoes(*g, 1, {"old"}, "echo on the first link")) return verdict(*g, {});
  // A restarted bridge whose old call the game has not seen fail.
  std::unique_ptr<Link> old = g->replace_link();
  g->send({g->reopen(1), g->echo(1, "new")});
  if (!wait_echoes(*g, 1, {"new"}, "echo on the new link")) return verdict(*g, {});
  const Clock::time_point deadline = Clock::now() + c.options().patience;
  while (!old->ended() && Clock::now() < deadline) old->wait(deadline, old->received());
  if (!old->ended()) g->fail("the game kept the replaced link open");
  expect_once_in_order(*g, 1, {"old", "new"});
  return verdict(*g, "a second link of a gateway-id takes its sessions, the first ends (code " +
                         std::to_string(old->status().error_code()) + ")");
}

Result check_kick(Context& c) {
  auto g = c.gateway("kick");
  g->send({g->open(1), g->open(2), g->echo(1, "k1"), g->message(1, packet(kKickMe, {}))});
  if (!g->wait_until([&] { return g->session(1).kicked; }, "KICK for a 1005 message")) {
    return verdict(*g, {});
  }
  expect_once_in_order(*g, 1, {"k1"});
  if (g->session(1).kick_seq <= g->session(1).seqs.front()) g->fail("the KICK's seq is not above");
  // As the bridge: the client is closed, so its session is.
  g->send({g->close(1), g->echo(1, "after"), g->echo(2, "barrier")});
  wait_echoes(*g, 2, {"barrier"}, "echo on another session after the CLOSE");
  if (g->echoes(1, "after") != 0) g->fail("a kicked and closed session still answered");
  return verdict(*g, "1005 -> KICK after the earlier echo; nothing after it");
}

Result check_kick_replay(Context& c) {
  auto g = c.gateway("kick-replay");
  g->set_auto_ack(false);
  g->set_hold(true);
  g->send({g->open(1), g->message(1, packet(kKickMe, {}))});
  const std::vector<Event> lost = lose_unacknowledged(*g, 1, "KICK (not acknowledged)");
  if (lost.empty()) return verdict(*g, {});
  g->restart();  // before acking anything again: the ack died with the bridge
  g->set_hold(false);
  g->set_auto_ack(true);  // OPEN re-attaches the session: its KICK comes again
  if (g->wait_until([&] { return g->session(1).kicked; }, "the unacknowledged KICK again") &&
      g->session(1).kick_seq != lost.front().seq()) {
    g->fail("the re-sent KICK has another Event.seq");
  }
  g->send({g->close(1)});
  return verdict(*g, "an unacknowledged KICK re-sent on re-attach, same seq");
}

Result check_close(Context& c) {
  auto g = c.gateway("close");
  g->send({g->open(1), g->open(2), g->echo(1, "before")});
  if (!wait_echoes(*g, 1, {"before"}, "echo before the CLOSE")) return verdict(*g, {});
  const Event message_after = g->echo(1, "after-close");
  g->send({g->close(1), message_after});
  // A late OPEN of the closed session (a replay after a restart) and a
  // message on it: both ignored.
  g->send({g->reopen(1), g->echo(1, "after-late-open"), g->close(1), g->echo(2, "barrier")});
  wait_echoes(*g, 2, {"barrier"}, "echo on another session after the CLOSE");
  if (g->echoes(1, "after-close") != 0) g->fail("a MESSAGE after CLOSE was processed");
  if (g->echoes(1, "after-late-open") != 0) {
    g->fail("an OPEN of a closed session re-opened it (it must be ignored)");
  }
  return verdict(*g, "after CLOSE nothing is processed; a late OPEN is ignored");
}

Result check_large_message(Context& c) {
  auto g = c.gateway("large-message");
  const std::string token(game_link::kMaxEventMessageBytes - 2, 'L');
  g->send({g->open(1), g->echo(1, token)});
  if (wait_echoes(*g, 1, {token}, "echo of a message of the largest size")) {
    expect_once_in_order(*g, 1, {token});
  }
  return verdict(*g, "a message of " + std::to_string(game_link::kMaxEventMessageBytes) +
                         " bytes echoed in a Batch within 4 MiB");
}

Result check_cut_by_bytes(Context& c) {
  auto g = c.gateway("cut-by-bytes");
  g->send({g->open(1)});
  Tokens ts;
  for (int i = 0; i < 48; ++i) ts.push_back("b" + std::to_string(i) + std::string(128 << 10, 'b'));
  send_echoes(*g, 1, ts, 24);  // 3 MiB a Batch
  if (wait_echoes(*g, 1, ts, "48 echoes of 128 KiB (a Batch over 4 MiB fails the link)")) {
    expect_once_in_order(*g, 1, ts);
  }
  return verdict(*g, "6 MiB of echoes in " + std::to_string(g->link().batches()) +
                         " Batches, each within 4 MiB");
}

Result check_oversize_batch(Context& c) {
  auto g = c.unlimited_gateway("oversize-batch");
  g->send({g->open(1), g->echo(1, "before")});
  if (!wait_echoes(*g, 1, {"before"}, "echo before the oversized Batch")) return verdict(*g, {});
  const std::string over(game_link::kMaxMessageBytes + 1024, 'O');
  g->send({g->echo(1, over)});
  g->wait_until([&] { return g->link().ended(); }, "the end of the link after a Batch over 4 MiB",
                true);
  const grpc::Status status = g->link().status();
  if (status.ok()) g->fail("the link ended OK after a Batch over 4 MiB; it must fail");
  // The bridge never re-sends it (it never sends one): a new link goes on.
  g->restart(g->link().sent().size());
  g->send({g->echo(1, "after")});
  if (wait_echoes(*g, 1, {"after"}, "echo on the next link") && g->echoes(1, over) != 0) {
    g->fail("the oversized message was processed");
  }
  return verdict(*g, "a Batch over 4 MiB fails the link (code " +
                         std::to_string(status.error_code()) + "); the next link serves");
}

Result check_back_pressure(Context& c) {
  auto g = c.gateway("back-pressure");
  g->send({g->open(1)});
  const Tokens ts = tokens(std::string(1000, 'p'), 1, 2000);
  // The kit stops reading (a bridge whose rings are full) while it asks for
  // 2000 echoes; reading resumes once they are written, or after 2 s should
  // the game stop reading too.
  g->link().pause();
  std::mutex mu;
  std::condition_variable cv;
  bool written = false;
  std::thread resume([&] {
    std::unique_lock lock(mu);
    cv.wait_for(lock, 2s, [&] { return written; });
    g->link().resume();
  });
  send_echoes(*g, 1, ts, 50);  // nothing taken meanwhile: the ack stays
  {
    std::lock_guard lock(mu);
    written = true;
  }
  cv.notify_all();
  resume.join();
  // A game that gives up on a link it cannot write to may end it: the
  // bridge re-links, and what was not acknowledged comes again.
  for (int relinks = 0; relinks < 3; ++relinks) {
    if (g->wait_until(
            [&] {
              return g->link().ended() || std::all_of(ts.begin(), ts.end(), [&](const auto& t) {
                       return g->echoes(1, t) != 0;
                     });
            },
            "2000 echoes after the kit read again", true) &&
        g->link().ended()) {
      g->restart();
      continue;
    }
    break;
  }
  if (g->failure().empty()) {
    if (g->link().ended()) {
      g->fail("the game kept ending the link");
    } else {
      expect_once_in_order(*g, 1, ts);
    }
  }
  return verdict(*g, "2000 echoes while the kit did not read: all came, once, in order");
}

struct Check {
  CheckInfo info;
  Result (*run)(Context&);
};

const std::vector<Check>& all_checks() {
  static const std::vector<Check> list = {
      {{"echo", "MESSAGE 1001 is answered by MESSAGE 1002 to the session (kit's behaviour)"},
       check_echo},
      {{"ack", "the game acknowledges what it read within 10 s; Batch.ack never above"}, check_ack},
      {{"order", "one session's events are handled and answered in order"}, check_order},
      {{"sessions", "many sessions on one link, each answered on its own"}, check_sessions},
      {{"open-twice", "an OPEN of a live session is a re-attach, not an error"}, check_open_twice},
      {{"gateways-apart", "session ids are per gateway-id"}, check_gateways_apart},
      {{"restart-duplicates", "a MESSAGE whose seq is not above the last is dropped"},
       check_restart_duplicates},
      {{"restart-replay", "unacknowledged game events are re-sent on re-attach, same seq"},
       check_restart_replay},
      {{"late-ack", "only acknowledged events may be forgotten; a late ack loses nothing"},
       check_late_ack},
      {{"cut-mid-batch", "a link cut mid-batch loses nothing and doubles nothing"},
       check_cut_mid_batch},
      {{"link-replaced", "a new link of a gateway-id replaces the old one"}, check_link_replaced},
      {{"kick", "a game-ended session: KICK, then nothing for it"}, check_kick},
      {{"kick-replay", "an unacknowledged KICK is re-sent on re-attach"}, check_kick_replay},
      {{"close", "after CLOSE nothing is processed; a late OPEN is ignored"}, check_close},
      {{"large-message", "a message of the largest size fits a Batch alone"}, check_large_message},
      {{"cut-by-bytes", "the game cuts its Batches at 4 MiB"}, check_cut_by_bytes},
      {{"oversize-batch", "a Batch over 4 MiB fails the link, nothing of it processed"},
       check_oversize_batch},
      {{"back-pressure", "a gateway that stops reading loses nothing"}, check_back_pressure},
  };
  return list;
}

}  // namespace

const std::vector<CheckInfo>& checks() {
  static const std::vector<CheckInfo> infos = [] {
    std::vector<CheckInfo> out;
    for (const Check& c : all_checks()) out.push_back(c.info);
    return out;
  }();
  return infos;
}

std::vector<Result> run(const Options& options, const std::vector<std::string>& only,
                        std::ostream& out) {
  Context context(options);
  std::vector<Result> results;
  if (!context.connect()) {
    Result r{"connect", false,
             "cannot reach " + options.target + " within " +
                 std::to_string(options.patience.count() / 1000) + " s"};
    out << "FAIL " << r.name << ": " << r.detail << std::endl;
    results.push_back(std::move(r));
    return results;
  }
  for (const Check& check : all_checks()) {
    if (!only.empty() && std::find(only.begin(), only.end(), check.info.name) == only.end()) {
      continue;
    }
    const Clock::time_point start = Clock::now();
    Result r = check.run(context);
    r.name = check.info.name;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    out << (r.passed ? "PASS " : "FAIL ") << r.name << ": " << r.detail << " [" << ms.count()
        << " ms]" << std::endl;
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace gatehouse::conformance
