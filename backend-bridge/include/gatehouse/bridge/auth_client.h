// AuthClient: the logins a studio's user centre checks (login =
// auth:HOST:PORT, proto/auth.proto, docs/login.md "The auth service"). The
// bridge makes the calls because it is the process with gRPC and a completion
// queue; the worker only parks the session (Session::kAuthPending) and acts on
// the verdict, failed-login limits included.
//
//   worker --kAuthRequest--> Bridge --check()--> Auth.Login ==gRPC==> user centre
//   worker <--kAuthVerdict-- WorkerRings <--on_completion (gRPC thread)--  <==
//
// One unary call per login on the bridge's CallQueue, with a deadline
// (auth-timeout; past it the login is refused auth_timeout). At most
// auth-max-inflight calls are unanswered at once over every worker; a login
// beyond that is refused at once (auth_busy): a slow user centre costs its
// logins, not the gateway's memory or the rings. A call that fails, and an
// answer that is not one, is auth_unavailable. Every login gets exactly one
// kAuthVerdict, whatever happens to its call.
//
// Threads: check(), configure(), cancel_all() and in_flight() on the main
// thread; a call's end on the gRPC thread, which writes the verdict straight
// into the worker's ring (WorkerRings).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "auth.grpc.pb.h"
#include "gatehouse/bridge/call_on_queue.h"
#include "gatehouse/bridge/worker_link.h"
#include "gatehouse/contract/control.h"
#include "gatehouse/contract/records.h"

namespace gatehouse::bridge {

class AuthClient {
 public:
  /// `gateway_id` is sent with every call (LoginRequest.gateway_id).
  AuthClient(CallQueue& calls, WorkerRings& rings, std::string gateway_id);
  /// Cancels the calls still up; the CallQueue's owner waits for their ends.
  ~AuthClient();
  AuthClient(const AuthClient&) = delete;
  AuthClient& operator=(const AuthClient&) = delete;

  /// The settings in force (login, auth-timeout, auth-max-inflight; live): a
  /// new address gets a new channel, and calls already up finish on theirs.
  void configure(const Settings& settings);
  /// One login to check. Its verdict comes now (auth_busy, or no auth
  /// service configured, or the bridge is stopping: auth_unavailable) or
  /// when its call ends.
  void check(const ipc::Parsed<ipc::AuthRequest>& request);
  /// No call is made after this; the ones up are cancelled (their logins
  /// refused auth_unavailable).
  void cancel_all();
  /// The instance the auth service named for `conn`'s login
  /// (LoginReply.instance), once: "" when none (main thread, at the
  /// session's stream open). Kept from the call's end, before its verdict
  /// goes, so that it is here when the stream opens; one never taken (the
  /// client left between) goes after kNamedKeepNs.
  std::string take_instance(std::uint64_t conn);
  static constexpr std::int64_t kNamedKeepNs = 60'000'000'000;

  /// Calls not answered yet (any thread).
  std::size_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }

  /// The verdict a call's end gives (public for the unit test): `status`
  /// the call's, `reply` its answer when the status is OK.
  static ipc::AuthVerdict verdict_of(std::uint64_t conn, const grpc::Status& status,
                                     const auth::LoginReply& reply);

 private:
  class Call;
  void refuse_now(std::uint64_t conn, LoginRefusal refusal);
  void ended(Call* call);

  CallGroup calls_;  // its calls on the bridge's queue
  WorkerRings& rings_;
  const std::string gateway_id_;
  std::string address_;  // main thread: "" while login is not auth:
  std::unique_ptr<auth::Auth::Stub> stub_;
  std::uint32_t timeout_ms_ = 0;
  std::size_t max_in_flight_ = 0;
  bool stopped_ = false;
  std::atomic<std::size_t> in_flight_{0};
  std::mutex mutex_;
  std::unordered_set<Call*> calls_up_;  // guarded by mutex_: for cancel_all()
  struct Named {
    std::string instance;
    std::int64_t at_ns;
  };
  void keep_instance(std::uint64_t conn, const std::string& instance);
  std::unordered_map<std::uint64_t, Named> named_;  // guarded by mutex_: take_instance()'s
  std::int64_t named_swept_ns_ = 0;                 // guarded by mutex_
};

}  // namespace gatehouse::bridge
