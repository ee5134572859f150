#include "gatehouse/bridge/auth_client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/support/async_unary_call.h>

#include <chrono>
#include <limits>
#include <utility>

#include "gatehouse/base/log.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/base/log_text.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/net/endpoint.h"

namespace gatehouse::bridge {
namespace {

// A user centre that is down, slow or saturated fails every login at once:
// a line a second per cause, the rest counted (and every refusal is in
// gatehouse_logins_total by reason).
LogLimit refused_log{spdlog::level::info, "auth service refused a login"};
LogLimit timeout_log{spdlog::level::warn, "auth service timed out"};
LogLimit unavailable_log{spdlog::level::warn, "auth service unavailable"};
LogLimit busy_log{spdlog::level::warn, "auth service busy"};

constexpr std::size_t kDetailLogBytes = 64;

}  // namespace

/// One Login call: owns itself from its start until its end has been
/// delivered (the gRPC thread deletes it).
class AuthClient::Call final : public CallOnQueue {
 public:
  Call(AuthClient& owner, CallGroup& calls, std::uint64_t conn)
      : CallOnQueue(calls), owner_(owner), conn_(conn) {}

  void start(auth::Auth::Stub& stub, const auth::LoginRequest& request, std::uint32_t timeout_ms) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    began();
    reader_ = stub.PrepareAsyncLogin(&context_, request, &calls_.queue());
    reader_->StartCall();
    reader_->Finish(&reply_, &status_, &finish_tag_);
  }

  void on_completion(Op, bool) override {
    UpstreamEvents::Unpublished unpublished;
    const ipc::AuthVerdict verdict = verdict_of(conn_, status_, reply_);
    // Before the verdict: the worker opens the session's stream once it has it.
    if (verdict.user_id != 0 && !reply_.instance().empty()) {
      owner_.keep_instance(conn_, reply_.instance());
    }
    owner_.rings_.auth_verdict(unpublished, verdict);
    owner_.rings_.publish(unpublished);
    if (verdict.user_id == 0) log_refusal(verdict);
    owner_.ended(this);
    ended();
    delete this;
  }

 private:
  ~Call() = default;

  void log_refusal(const ipc::AuthVerdict& verdict) const {
    switch (static_cast<LoginRefusal>(verdict.refusal)) {
      case LoginRefusal::kAuthRefused:
        refused_log.log("auth: conn {:#x} refused (user {}): '{}'", conn_, verdict.claimed_user_id,
                        log_text(reply_.detail(), kDetailLogBytes));
        break;
      case LoginRefusal::kAuthTimeout:
        timeout_log.log("auth: conn {:#x}: no answer within the deadline (auth-timeout)", conn_);
        break;
      default:
        if (status_.ok()) {
          unavailable_log.log("auth: conn {:#x}: the answer is not one (result {}, user id {})",
                              conn_, static_cast<int>(reply_.result()), reply_.user_id());
        } else {
          unavailable_log.log("auth: conn {:#x}: call failed: {} {}", conn_,
                              static_cast<int>(status_.error_code()),
                              log_text(status_.error_message(), kDetailLogBytes));
        }
        break;
    }
  }

  AuthClient& owner_;
  const std::uint64_t conn_;
  Tag finish_tag_{this, Op::kFinish};
  std::unique_ptr<grpc::ClientAsyncResponseReader<auth::LoginReply>> reader_;
  auth::LoginReply reply_;
  grpc::Status status_;
};

AuthClient::AuthClient(CallQueue& calls, WorkerRings& rings, std::string gateway_id)
    : calls_(calls), rings_(rings), gateway_id_(std::move(gateway_id)) {}

AuthClient::~AuthClient() {
  cancel_all();
}

void AuthClient::configure(const Settings& settings) {
  timeout_ms_ = settings.auth_timeout_ms;
  max_in_flight_ = settings.auth_max_inflight;
  const std::string address =
      settings.login_mode == LoginMode::kAuthService ? settings.login_file : std::string();
  if (address == address_) return;
  address_ = address;
  stub_.reset();
  if (address_.empty()) return;
  // The game channel's arguments suit it too: a service that comes back is
  // used again within ~2 s, and calls while it is down fail at once.
  stub_ = auth::Auth::NewStub(game_channel(address_));
  spdlog::info("auth service: {} (auth-timeout {} ms, auth-max-inflight {})", address_, timeout_ms_,
               max_in_flight_);
}

void AuthClient::check(const ipc::Parsed<ipc::AuthRequest>& request) {
  const std::uint64_t conn = request.header.conn;
  const auto login = protocol::parse_login(request.tail);
  if (stopped_ || !stub_ || !login) {
    // Stopping, or the login setting moved away from auth: (workers that
    // still defer are being rolled), or a body the worker had parsed does
    // not parse (not reached).
    unavailable_log.log("auth: conn {:#x}: no auth service to ask ({})", conn,
                        stopped_ ? "stopping"
                        : !stub_ ? "login is not auth:"
                                 : "bad body");
    return refuse_now(conn, LoginRefusal::kAuthUnavailable);
  }
  if (in_flight_.load(std::memory_order_relaxed) >= max_in_flight_) {
    busy_log.log("auth: {} logins unanswered (auth-max-inflight); refusing conn {:#x}",
                 in_flight_.load(std::memory_order_relaxed), conn);
    return refuse_now(conn, LoginRefusal::kAuthBusy);
  }
  // The client's fields as it sent them (the proto's are bytes).
  auth::LoginRequest out;
  out.set_login_way(login->login_way);
  out.set_open_udid(std::string(login->open_udid));
  out.set_client_certificate(std::string(login->client_certificate));
  out.set_client_version(login->client_version);
  out.set_user_lang(std::string(login->user_lang));
  out.set_app_id(std::string(login->app_id));
  out.set_os_version(std::string(login->os_version));
  out.set_device_name(std::string(login->device_name));
  out.set_device_id(std::string(login->device_id));
  out.set_device_id_type(login->device_id_type);
  out.set_login_ip(std::string(login->login_ip));
  out.set_remote_address(address_text(request.header.address));
  out.set_remote_port(request.header.port);
  out.set_gateway_id(gateway_id_);

  auto* call = new Call(*this, calls_, conn);
  {
    std::lock_guard lock(mutex_);
    calls_up_.insert(call);
  }
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  call->start(*stub_, out, timeout_ms_);
}

void AuthClient::cancel_all() {
  stopped_ = true;
  std::lock_guard lock(mutex_);
  for (Call* call : calls_up_) call->cancel();
}

void AuthClient::ended(Call* call) {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  calls_up_.erase(call);
}

void AuthClient::refuse_now(std::uint64_t conn, LoginRefusal refusal) {
  UpstreamEvents::Unpublished unpublished;
  rings_.auth_verdict(unpublished,
                      ipc::AuthVerdict{conn, 0, static_cast<std::uint32_t>(refusal), 0, 0});
  rings_.publish(unpublished);
}

void AuthClient::keep_instance(std::uint64_t conn, const std::string& instance) {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  const std::lock_guard lock(mutex_);
  // Those never taken (the client left before its stream opened) go, in a
  // sweep at most once per kNamedKeepNs.
  if (now - named_swept_ns_ > kNamedKeepNs) {
    named_swept_ns_ = now;
    std::erase_if(named_,
                  [now](const auto& entry) { return now - entry.second.at_ns > kNamedKeepNs; });
  }
  named_[conn] = Named{instance, now};
}

std::string AuthClient::take_instance(std::uint64_t conn) {
  const std::lock_guard lock(mutex_);
  if (named_.empty()) return {};
  const auto it = named_.find(conn);
  if (it == named_.end()) return {};
  std::string instance = std::move(it->second.instance);
  named_.erase(it);
  return instance;
}

ipc::AuthVerdict AuthClient::verdict_of(std::uint64_t conn, const grpc::Status& status,
                                        const auth::LoginReply& reply) {
  const auto refused = [conn](LoginRefusal why, std::int32_t claimed = 0) {
    return ipc::AuthVerdict{conn, 0, static_cast<std::uint32_t>(why), claimed, 0};
  };
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return refused(LoginRefusal::kAuthTimeout);
  }
  if (!status.ok()) return refused(LoginRefusal::kAuthUnavailable);
  switch (reply.result()) {
    case auth::LoginReply::OK:
      // A user id the wire cannot carry is no answer (user_login_ack's uid
      // is an int32 above 0).
      if (reply.user_id() > 0) return ipc::AuthVerdict{conn, reply.user_id(), 0, 0, 0};
      return refused(LoginRefusal::kAuthUnavailable);
    case auth::LoginReply::REFUSED:
      return refused(LoginRefusal::kAuthRefused, std::max(reply.claimed_user_id(), 0));
    default:
      return refused(LoginRefusal::kAuthUnavailable);  // a result this gateway does not know
  }
}

}  // namespace gatehouse::bridge
