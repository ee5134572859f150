// DemoAuth (gatehouse/game/demo_auth.h): the accounts, the check, and the
// Auth service on gRPC's callback API.
//
// A registration hashes outside the lock (a hash is the slow part), then
// inserts under it unless another login of the same NAME got there first; in
// that case this login is checked against the account that won, so that
// racing first logins make one account. A verification copies the hash under
// the lock and verifies outside it.
#include "gatehouse/game/demo_auth.h"

#include <sodium.h>

#include <array>
#include <atomic>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include "auth.grpc.pb.h"
#include "gatehouse/base/log_text.h"

namespace gatehouse::game::demo {

namespace {

using auth::LoginReply;
using auth::LoginRequest;
using PasswordHash = std::array<char, crypto_pwhash_STRBYTES>;

/// Argon2id at libsodium's minimum cost: a login must not hold a gRPC thread
/// for long, and this is a demo (see the header).
constexpr unsigned long long kOpsLimit = crypto_pwhash_OPSLIMIT_MIN;
constexpr std::size_t kMemLimit = crypto_pwhash_MEMLIMIT_MIN;

DemoAuth::Verdict refused(std::string detail, std::int32_t claimed = 0) {
  DemoAuth::Verdict verdict;
  verdict.claimed_user_id = claimed;
  verdict.detail = std::move(detail);
  return verdict;
}

DemoAuth::Verdict accepted(std::int32_t user_id, bool registered) {
  DemoAuth::Verdict verdict;
  verdict.ok = true;
  verdict.user_id = user_id;
  verdict.registered = registered;
  return verdict;
}

bool verify(const PasswordHash& hash, std::string_view password) {
  return crypto_pwhash_str_verify(hash.data(), password.data(), password.size()) == 0;
}

}  // namespace

struct DemoAuth::Impl {
  /// The Auth service; forwards to its Impl.
  class Service final : public auth::Auth::CallbackService {
   public:
    explicit Service(Impl& impl) : impl_(impl) {}
    grpc::ServerUnaryReactor* Login(grpc::CallbackServerContext* context,
                                    const LoginRequest* request, LoginReply* reply) override {
      return impl_.login(*context, *request, *reply);
    }

   private:
    Impl& impl_;
  };

  /// A reply held by the delay: a grpc::Alarm, no thread, sends it. The
  /// alarm fires once, at the deadline or at once when the call is
  /// cancelled (the gateway gave up, or the server shuts down).
  class HeldReply final : public grpc::ServerUnaryReactor {
   public:
    HeldReply(Impl& impl, std::chrono::milliseconds delay) : impl_(impl) {
      impl_.held.fetch_add(1, std::memory_order_relaxed);
      alarm_.Set(std::chrono::system_clock::now() + delay,
                 [this](bool) { Finish(grpc::Status::OK); });
    }
    void OnCancel() override { alarm_.Cancel(); }
    void OnDone() override {
      impl_.held.fetch_sub(1, std::memory_order_relaxed);
      delete this;
    }

   private:
    Impl& impl_;
    grpc::Alarm alarm_;
  };

  struct Account {
    std::int32_t user_id;
    PasswordHash hash;
  };

  Impl(Options options, std::ostream* log_to)
      : max_accounts(options.max_accounts),
        delay_ms(options.delay.count()),
        mode(options.mode),
        log(log_to) {}

  grpc::ServerUnaryReactor* login(grpc::CallbackServerContext& context, const LoginRequest& request,
                                  LoginReply& reply);
  Verdict check(std::string_view credential);
  /// NAME's account, registered with `hash` unless it exists; whether it was.
  std::pair<Account, bool> find_or_add(std::string_view name, const PasswordHash* hash);
  void log_line(const std::string& line);

  const std::size_t max_accounts;
  std::atomic<std::int64_t> delay_ms;
  std::atomic<Mode> mode;
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::size_t> held{0};

  mutable std::mutex mu;
  std::unordered_map<std::string, Account> accounts;  ///< guarded by mu, by NAME
  std::int32_t next_id = kFirstUserId;                ///< guarded by mu

  std::ostream* const log;
  std::mutex log_mu;

  Service service{*this};
};

std::pair<DemoAuth::Impl::Account, bool> DemoAuth::Impl::find_or_add(std::string_view name,
                                                                     const PasswordHash* hash) {
  std::lock_guard lock(mu);
  const auto it = accounts.find(std::string(name));
  if (it != accounts.end()) return {it->second, false};
  if (hash == nullptr || accounts.size() >= max_accounts) return {Account{0, {}}, false};
  const Account account{next_id++, *hash};
  accounts.emplace(name, account);
  return {account, true};
}

DemoAuth::Verdict DemoAuth::Impl::check(std::string_view credential) {
  const auto colon = credential.find(':');
  if (colon == std::string_view::npos) return refused("no ':' in the credential (NAME:PASSWORD)");
  const std::string_view name = credential.substr(0, colon);
  const std::string_view password = credential.substr(colon + 1);
  if (name.empty()) return refused("empty name");
  if (password.empty()) return refused("empty password");
  if (name.size() > kMaxNameBytes) return refused("name longer than 64 bytes");
  if (password.size() > kMaxPasswordBytes) return refused("password longer than 1024 bytes");

  auto [account, added] = find_or_add(name, nullptr);
  if (account.user_id == 0) {
    // Not known yet: hash without the lock, then register unless a racing
    // login of the same NAME did meanwhile.
    PasswordHash hash{};
    if (crypto_pwhash_str(hash.data(), password.data(), password.size(), kOpsLimit, kMemLimit) !=
        0) {
      return refused("cannot hash the password (out of memory)");
    }
    std::tie(account, added) = find_or_add(name, &hash);
    if (account.user_id == 0) return refused("full");
    if (added) return accepted(account.user_id, true);
  }
  if (!verify(account.hash, password)) return refused("wrong password", account.user_id);
  return accepted(account.user_id, false);
}

grpc::ServerUnaryReactor* DemoAuth::Impl::login(grpc::CallbackServerContext& context,
                                                const LoginRequest& request, LoginReply& reply) {
  calls.fetch_add(1, std::memory_order_relaxed);
  const std::string from = "from " + log_text(request.remote_address()) + ":" +
                           std::to_string(request.remote_port()) + " via '" +
                           log_text(request.gateway_id()) + "'";
  const Mode now = mode.load(std::memory_order_relaxed);
  if (now == Mode::kUnavailable) {
    log_line("login " + from + ": answered UNAVAILABLE (user centre down)");
    grpc::ServerUnaryReactor* reactor = context.DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "demo user centre is down"));
    return reactor;
  }

  const std::string& credential = request.client_certificate();
  const auto colon = credential.find(':');
  // Only the NAME is ever logged, and only when there is one: a credential
  // without ':' may well be a password.
  const std::string who =
      colon == std::string::npos ? "" : "'" + log_text(credential.substr(0, colon)) + "' ";
  const Verdict verdict =
      now == Mode::kRefuseAll ? refused("refusing every login") : check(credential);
  if (verdict.ok) {
    reply.set_result(LoginReply::OK);
    reply.set_user_id(verdict.user_id);
  } else {
    reply.set_result(LoginReply::REFUSED);
    reply.set_claimed_user_id(verdict.claimed_user_id);
    reply.set_detail(verdict.detail);
  }

  const std::chrono::milliseconds delay(delay_ms.load(std::memory_order_relaxed));
  std::string line = "login " + who + from + ": ";
  if (verdict.ok) {
    line += "ok, user " + std::to_string(verdict.user_id) +
            (verdict.registered ? " (new account)" : "");
  } else {
    line += "refused (" + verdict.detail + ")";
    if (verdict.claimed_user_id != 0)
      line += ", claimed user " + std::to_string(verdict.claimed_user_id);
  }
  if (delay.count() > 0) line += ", reply in " + std::to_string(delay.count()) + " ms";
  log_line(line);

  if (delay.count() > 0) return new HeldReply(*this, delay);
  grpc::ServerUnaryReactor* reactor = context.DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void DemoAuth::Impl::log_line(const std::string& line) {
  if (log == nullptr) return;
  // One write, so that it does not interleave with the game handler's
  // lines on the same stream (they hold another mutex).
  const std::string whole = "gatehouse-demo-game: " + line + '\n';
  std::lock_guard lock(log_mu);
  *log << whole << std::flush;
}

DemoAuth::DemoAuth(Options options, std::ostream* log) {
  if (sodium_init() < 0) throw std::runtime_error("demo auth: libsodium cannot start");
  if (options.max_accounts >
      static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max() - kFirstUserId) + 1) {
    throw std::invalid_argument("demo auth: max_accounts would run user ids past int32");
  }
  impl_ = std::make_unique<Impl>(options, log);
}

DemoAuth::~DemoAuth() = default;

grpc::Service* DemoAuth::service() noexcept {
  return &impl_->service;
}

DemoAuth::Verdict DemoAuth::check(std::string_view credential) {
  return impl_->check(credential);
}

void DemoAuth::set_delay(std::chrono::milliseconds delay) noexcept {
  impl_->delay_ms.store(delay.count(), std::memory_order_relaxed);
}

void DemoAuth::set_mode(Mode mode) noexcept {
  impl_->mode.store(mode, std::memory_order_relaxed);
}

std::size_t DemoAuth::accounts() const {
  std::lock_guard lock(impl_->mu);
  return impl_->accounts.size();
}

std::uint64_t DemoAuth::calls() const noexcept {
  return impl_->calls.load(std::memory_order_relaxed);
}

std::size_t DemoAuth::held() const noexcept {
  return impl_->held.load(std::memory_order_relaxed);
}

}  // namespace gatehouse::game::demo
