// The supervisor's loop, one do_work() at a time, against fake processes
// and a fake clock: the "children" attach to the real segment (a unique one
// per test) and beat when the test says so.
#include "gatehouse/supervisor/supervisor.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gatehouse::supervisor {
namespace {

constexpr std::int64_t kMs = 1'000'000;

/// What the fake processes did and will do; shared with the test.
struct World {
  std::int64_t now = 1'000 * kMs;
  pid_t next_pid = 1000;
  std::string segment_name;
  std::optional<GatewaySegment> segment;  ///< the children's view of it
  std::map<pid_t, ChildId> running;
  std::map<pid_t, std::vector<std::string>> argv;  ///< of every process spawned
  std::vector<std::pair<pid_t, int>> signals;      ///< every kill(), in order
  std::deque<std::pair<pid_t, int>> exited;        ///< to be reaped
  bool obey_signals = true;                        ///< SIGTERM / SIGKILL end the process
  std::vector<std::vector<std::string>> runs;      ///< commands run()
  RunResult run_result{0, "compatible with the segment\n"};
  int frontend_doorbell = -1;  ///< the eventfd the frontend would wait on

  ProcessStatus& status(ChildId id) {
    ControlBlock& c = segment->control();
    return id.role == Role::kFrontend ? c.frontends[id.index]
           : id.role == Role::kBridge ? c.bridges[id.index]
                                      : c.workers[id.index];
  }
  /// Every running child beats now.
  void beat(std::optional<ChildId> except = std::nullopt) {
    for (const auto& [pid, id] : running) {
      if (!(except && *except == id)) status(id).heartbeat_ns.store(now);
    }
  }
  void exit(pid_t pid, int status) {
    running.erase(pid);
    exited.emplace_back(pid, status);
  }
  int signals_to(pid_t pid, int signo) const {
    return static_cast<int>(std::count(signals.begin(), signals.end(), std::pair{pid, signo}));
  }
};

class FakeProcesses final : public Processes {
 public:
  explicit FakeProcesses(std::shared_ptr<World> world) : world_(std::move(world)) {}

  pid_t spawn(const std::vector<std::string>& argv, const std::vector<int>&) override {
    World& w = *world_;
    if (!w.segment) w.segment.emplace(GatewaySegment::attach(w.segment_name));
    ChildId id{Role::kWorker};
    if (argv[0].ends_with("gatehouse-frontend")) id = {Role::kFrontend};
    if (argv[0].ends_with("gatehouse-bridge")) id = {Role::kBridge};
    const auto index = std::find(argv.begin(), argv.end(), "--index");
    if (index != argv.end()) id.index = static_cast<std::uint32_t>(std::stoul(*(index + 1)));
    if (id.role == Role::kFrontend) {
      w.frontend_doorbell = std::stoi(*(std::find(argv.begin(), argv.end(), "--doorbell") + 1));
    }
    const pid_t pid = w.next_pid++;
    w.running[pid] = id;
    w.argv[pid] = argv;
    // It attaches at once and beats.
    w.status(id).pid.store(pid);
    w.status(id).heartbeat_ns.store(w.now + 1);
    return pid;
  }
  void kill(pid_t pid, int signo) override {
    world_->signals.emplace_back(pid, signo);
    if (world_->obey_signals && world_->running.count(pid) != 0) world_->exit(pid, signo);
  }
  std::optional<Exit> reap() override {
    if (world_->exited.empty()) return std::nullopt;
    const auto [pid, status] = world_->exited.front();
    world_->exited.pop_front();
    return Exit{pid, status, 0};
  }
  RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds) override {
    world_->runs.push_back(argv);
    return world_->run_result;
  }
  std::int64_t now_ns() override { return world_->now; }

 private:
  std::shared_ptr<World> world_;
};

ParseResult parse(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_config(static_cast<int>(argv.size()), argv.data());
}

class SupervisorTest : public ::testing::Test {
 protected:
  /// A supervisor of two workers with `extra` flags, started.
  void start(std::vector<std::string> extra = {}) {
    static int count = 0;
    const std::string instance =
        "suptest-" + std::to_string(::getpid()) + "-" + std::to_string(count++);
    args_ = {"gatehouse", "--instance",  instance,           "--workers",   "2",
             "--listen",  "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--max-connections",
             "64",        "--bin-dir",   "/nonexistent"};
    // Its admin socket where a test may make one (not under /run).
    admin_socket_ = (std::filesystem::temp_directory_path() / (instance + ".sock")).string();
    args_.insert(args_.end(), {"--admin-socket", admin_socket_});
    args_.insert(args_.end(), extra.begin(), extra.end());
    auto parsed = parse(args_);
    ASSERT_TRUE(parsed.config) << parsed.message;
    world_->segment_name = "gatehouse-" + instance;
    supervisor_ = std::make_unique<Supervisor>(std::move(*parsed.config), args_,
                                               std::make_unique<FakeProcesses>(world_));
    ASSERT_TRUE(supervisor_->start());
  }
  void TearDown() override {
    world_->segment.reset();
    supervisor_.reset();
  }
  pid_t pid(ChildId id) const { return supervisor_->pid_of(id); }
  /// What follows `flag` on the command line `id` was started with.
  std::string arg(ChildId id, const std::string& flag) const {
    const std::vector<std::string>& argv = world_->argv.at(pid(id));
    const auto at = std::find(argv.begin(), argv.end(), flag);
    return at != argv.end() && at + 1 != argv.end() ? *(at + 1) : "";
  }
  /// Time passes; every child (but `except`) beats; one pass of the loop.
  int step(std::int64_t ms, std::optional<ChildId> except = std::nullopt) {
    world_->now += ms * kMs;
    world_->beat(except);
    return supervisor_->do_work();
  }
  std::uint64_t restarts(metrics::Component component, metrics::RestartCause cause) {
    return supervisor_->segment().metrics().supervisor.restarts[component][cause].load();
  }

  std::uint64_t reloads(metrics::Counter result) {
    return supervisor_->segment().metrics().supervisor.counters[result].load();
  }

  std::shared_ptr<World> world_ = std::make_shared<World>();
  std::vector<std::string> args_;
  std::string admin_socket_;
  std::unique_ptr<Supervisor> supervisor_;
};

const ChildId kFrontend{Role::kFrontend};
const ChildId kBridge{Role::kBridge};
const ChildId kBridge1{Role::kBridge, 1};
const ChildId kWorker0{Role::kWorker, 0};
const ChildId kWorker1{Role::kWorker, 1};

TEST_F(SupervisorTest, StartsTheBridgeTheWorkersAndTheFrontend) {
  start();
  EXPECT_EQ(world_->running.size(), 4u);
  for (const ChildId id : {kBridge, kWorker0, kWorker1, kFrontend}) {
    EXPECT_NE(pid(id), 0) << id.name();
  }
  EXPECT_EQ(step(10), 0) << "nothing to do while every child runs and beats";
  EXPECT_FALSE(supervisor_->finished());
}

TEST_F(SupervisorTest, ACrashedWorkerIsReplacedAtOnceThenWithBackoff) {
  start({"--restart-backoff-max", "0.4"});
  const pid_t first = pid(kWorker1), worker0 = pid(kWorker0);
  world_->exit(first, SIGSEGV);
  EXPECT_GT(step(1), 0) << "reaped";
  EXPECT_GT(step(1), 0) << "restarted on the next pass";
  const pid_t second = pid(kWorker1);
  EXPECT_NE(second, 0) << "the first crash in a while restarts at once";
  EXPECT_NE(second, first);
  EXPECT_EQ(restarts(metrics::kWorker, metrics::kCrash), 1u);
  // It crashes again at once: 100 ms of backoff, then 200, then the ceiling
  // (each counted from the pass that reaped it).
  pid_t last = second;
  for (const std::int64_t backoff_ms : {100, 200, 400, 400}) {
    world_->exit(last, SIGSEGV);
    step(1);
    step(backoff_ms);
    EXPECT_EQ(pid(kWorker1), 0) << backoff_ms;
    step(1);
    last = pid(kWorker1);
    EXPECT_NE(last, 0) << "restarted after " << backoff_ms << " ms";
  }
  EXPECT_EQ(restarts(metrics::kWorker, metrics::kCrash), 5u);
  EXPECT_EQ(pid(kWorker0), worker0) << "the others are untouched";
}

TEST_F(SupervisorTest, ASilentChildIsKilledAndItsRestartCountsAsAHang) {
  start({"--hang-timeout", "1"});
  const pid_t bridge = pid(kBridge);
  step(999, kBridge);
  EXPECT_EQ(world_->signals_to(bridge, SIGKILL), 0);
  step(2, kBridge);
  EXPECT_EQ(world_->signals_to(bridge, SIGKILL), 1) << "no heartbeat for hang-timeout";
  step(1);
  EXPECT_NE(pid(kBridge), bridge);
  EXPECT_EQ(restarts(metrics::kBridge, metrics::kHang), 1u);
  EXPECT_EQ(restarts(metrics::kBridge, metrics::kCrash), 0u);
}

// Bridge shards: each bridge has its index and its doorbell, the workers
// ring every bridge's, and a bridge that dies or hangs is replaced alone.
TEST_F(SupervisorTest, EachBridgeIsStartedAndReplacedAlone) {
  start({"--bridges", "2", "--hang-timeout", "1"});
  EXPECT_EQ(world_->running.size(), 5u);
  EXPECT_EQ(arg(kBridge, "--index"), "0");
  EXPECT_EQ(arg(kBridge1, "--index"), "1");
  EXPECT_EQ(kBridge1.name(), "bridge-1");
  EXPECT_NE(arg(kBridge, "--doorbell"), arg(kBridge1, "--doorbell"));
  const std::string peers = arg(kFrontend, "--doorbell") + "," + arg(kBridge, "--doorbell") + "," +
                            arg(kBridge1, "--doorbell");
  EXPECT_EQ(arg(kWorker0, "--peer-doorbells"), peers) << "the frontends', then the bridges'";
  EXPECT_EQ(arg(kWorker1, "--peer-doorbells"), peers);

  const pid_t bridge0 = pid(kBridge), first = pid(kBridge1);
  world_->exit(first, SIGSEGV);
  step(1);
  step(1);
  EXPECT_NE(pid(kBridge1), 0);
  EXPECT_NE(pid(kBridge1), first);
  EXPECT_EQ(arg(kBridge1, "--index"), "1") << "the same shard";
  EXPECT_EQ(restarts(metrics::kBridge, metrics::kCrash), 1u);

  const pid_t second = pid(kBridge1);
  step(999, kBridge1);
  step(2, kBridge1);
  EXPECT_EQ(world_->signals_to(second, SIGKILL), 1) << "no heartbeat for hang-timeout";
  step(1);
  EXPECT_NE(pid(kBridge1), second);
  EXPECT_EQ(restarts(metrics::kBridge, metrics::kHang), 1u);
  EXPECT_EQ(pid(kBridge), bridge0) << "bridge 0 is untouched";
  EXPECT_EQ(world_->signals_to(bridge0, SIGKILL), 0);
}

/// What a bridge publishes: one game-service instance `name` on `sessions`.
void publish_instance(metrics::RoutingTable& table, const char* name, std::uint32_t state,
                      std::int64_t sessions) {
  metrics::RoutingNames names{};
  names.service_count = 1;
  names.services[0].instances = state == metrics::kInstanceLive ? 1 : 0;
  names.instance_count = 1;
  std::strncpy(names.instances[0].name, name, sizeof names.instances[0].name - 1);
  names.instances[0].state = state;
  table.up[0].store(1);
  table.sessions[0].store(sessions);
  metrics::publish_routing(table, names);
}

// gatehousectl backend disable, with two bridges: both are woken, and the
// answer waits until each bridge's routing table shows the instance
// disabled (each takes the switch on its own).
TEST_F(SupervisorTest, ABackendSwitchIsAnsweredOnceEveryBridgeHasTakenIt) {
  start({"--bridges", "2"});
  MetricsBlock& bridges_view = world_->segment->metrics();
  publish_instance(bridges_view.routing[0], "game1", metrics::kInstanceLive, 2);
  publish_instance(bridges_view.routing[1], "game1", metrics::kInstanceLive, 3);
  std::vector<int> doorbells;
  for (const ChildId bridge : {kBridge, kBridge1}) {
    doorbells.push_back(std::stoi(arg(bridge, "--doorbell")));
    std::uint64_t rung = 0;
    while (::read(doorbells.back(), &rung, sizeof rung) == sizeof rung) {
    }
  }
  auto answer = std::async(std::launch::async, [&] {
    return admin::call(admin_socket_, "backend disable game1", std::chrono::seconds(30));
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (world_->segment->disabled_backends().empty() &&
         std::chrono::steady_clock::now() < deadline) {
    step(0);
  }
  ASSERT_EQ(world_->segment->disabled_backends(), std::vector<std::string>{"game1"});
  for (const int doorbell : doorbells) {
    std::uint64_t rung = 0;
    EXPECT_EQ(::read(doorbell, &rung, sizeof rung), static_cast<ssize_t>(sizeof rung))
        << "each bridge is woken to take the list";
  }
  const auto answered = [&] {
    return supervisor_->segment()
        .metrics()
        .supervisor.admin_commands[metrics::kAdminBackendDisable][metrics::kAdminOk]
        .load();
  };
  publish_instance(bridges_view.routing[0], "game1", metrics::kInstanceDisabled, 2);
  step(1);
  step(1);
  EXPECT_EQ(answered(), 0u) << "bridge 1 still sends new sessions there";
  publish_instance(bridges_view.routing[1], "game1", metrics::kInstanceDisabled, 3);
  step(1);
  EXPECT_EQ(answered(), 1u);
  // The server writes the answer on its next passes.
  while (answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
         std::chrono::steady_clock::now() < deadline) {
    step(0);
  }
  const auto response = answer.get();
  ASSERT_TRUE(std::holds_alternative<admin::Response>(response)) << std::get<std::string>(response);
  EXPECT_THAT(std::get<admin::Response>(response).lines,
              ::testing::ElementsAre(
                  "instance game1 disabled: no new session goes there; its 5 sessions stay"));
}

TEST_F(SupervisorTest, SigtermDrainsThenStopsTheRestOnceTheFrontendHasGone) {
  start({"--drain-wait", "1", "--drain-timeout", "5"});
  supervisor_->handle_signal(SIGTERM);
  EXPECT_EQ(supervisor_->segment().control().draining.load(), kDrainNoNewConnections);
  // A worker that dies during drain-wait is replaced: it carries sessions.
  const pid_t worker = pid(kWorker0);
  world_->exit(worker, SIGKILL);
  step(1);
  step(1);
  EXPECT_NE(pid(kWorker0), 0);
  EXPECT_NE(pid(kWorker0), worker);
  step(1'000);
  EXPECT_EQ(supervisor_->segment().control().draining.load(), kDrainClosing);
  // The frontend has closed its last connection and exits.
  world_->exit(pid(kFrontend), 0);
  step(1);
  EXPECT_TRUE(supervisor_->drain().stopping());
  EXPECT_EQ(pid(kFrontend), 0) << "not replaced while draining";
  EXPECT_FALSE(supervisor_->finished());
  step(1);
  EXPECT_TRUE(supervisor_->finished()) << "the others obeyed SIGTERM at once";
  EXPECT_EQ(world_->signals.size(), 3u) << "SIGTERM to the bridge and both workers";
  for (const auto& [p, signo] : world_->signals) EXPECT_EQ(signo, SIGTERM);
}

TEST_F(SupervisorTest, PastTheDrainDeadlineWhatIsLeftIsKilled) {
  start({"--drain-timeout", "2"});
  world_->obey_signals = false;
  supervisor_->handle_signal(SIGTERM);
  step(1);
  EXPECT_TRUE(world_->signals.empty()) << "the frontend is still closing connections";
  step(2'000);
  EXPECT_EQ(world_->signals.size(), 4u) << "SIGKILL to every child";
  for (const auto& [p, signo] : world_->signals) EXPECT_EQ(signo, SIGKILL);
  for (const auto& [p, id] : std::map(world_->running)) world_->exit(p, SIGKILL);
  step(1);
  EXPECT_TRUE(supervisor_->finished());
}

TEST_F(SupervisorTest, SighupChecksTheLayoutThenRollsTheWorkersOneByOne) {
  start();
  const pid_t w0 = pid(kWorker0), w1 = pid(kWorker1), frontend = pid(kFrontend);
  world_->obey_signals = false;
  supervisor_->handle_signal(SIGHUP);
  ASSERT_EQ(world_->runs.size(), 1u);
  EXPECT_EQ(world_->runs[0], (std::vector<std::string>{"/nonexistent/gatehouse-worker",
                                                       "--check-layout", world_->segment_name}))
      << "an argv, no shell";
  EXPECT_TRUE(supervisor_->reloading());
  EXPECT_EQ(world_->signals, (std::vector<std::pair<pid_t, int>>{{w0, SIGTERM}}));
  step(1);
  EXPECT_EQ(world_->signals.size(), 1u) << "worker 1 waits for worker 0";
  world_->exit(w0, 0);
  step(1);
  EXPECT_NE(pid(kWorker0), 0) << "replaced at once";
  EXPECT_EQ(restarts(metrics::kWorker, metrics::kReload), 1u);
  step(1);
  EXPECT_EQ(world_->signals.back(), (std::pair{w1, SIGTERM}));
  world_->exit(w1, 0);
  step(1);
  step(1);
  EXPECT_FALSE(supervisor_->reloading());
  EXPECT_EQ(restarts(metrics::kWorker, metrics::kReload), 2u);
  EXPECT_EQ(restarts(metrics::kWorker, metrics::kCrash), 0u);
  EXPECT_EQ(pid(kFrontend), frontend) << "only the workers are replaced";
}

// The settings a reload can change live are published in the control block
// and the frontend is woken to take them at once (not at its next wakeup,
// which an idle frontend may not have for a while).
TEST_F(SupervisorTest, SighupPublishesTheLiveSettingsAndWakesTheFrontend) {
  const auto conf = std::filesystem::temp_directory_path() /
                    ("gatehouse-suptest-" + std::to_string(::getpid()) + ".conf");
  std::ofstream(conf) << "rpm-limit = 200\n";
  start({"--config", conf.string()});
  std::uint64_t rung = 0;
  while (::read(world_->frontend_doorbell, &rung, sizeof rung) == sizeof rung) {
  }
  const std::uint64_t generation = supervisor_->segment().settings_generation();
  std::ofstream(conf) << "rpm-limit = 8\nring-bytes = 2097152\n";
  supervisor_->handle_signal(SIGHUP);
  std::filesystem::remove(conf);
  EXPECT_GT(supervisor_->segment().settings_generation(), generation);
  EXPECT_EQ(supervisor_->segment().settings().rpm_limit, 8u);
  EXPECT_EQ(reloads(metrics::kReloadsApplied), 1u);
  EXPECT_EQ(reloads(metrics::kReloadsRefused), 0u);
  EXPECT_EQ(supervisor_->segment().settings().ring_bytes, 1u << 20) << "needs a restart";
  EXPECT_EQ(::read(world_->frontend_doorbell, &rung, sizeof rung),
            static_cast<ssize_t>(sizeof rung))
      << "the frontend's doorbell was rung";
}

TEST_F(SupervisorTest, AReloadThatDoesNotStopInTimeKillsTheWorker) {
  start();
  world_->obey_signals = false;
  supervisor_->handle_signal(SIGHUP);
  const pid_t w0 = pid(kWorker0);
  step(5'000);
  EXPECT_EQ(world_->signals_to(w0, SIGKILL), 0);
  step(1);
  EXPECT_EQ(world_->signals_to(w0, SIGKILL), 1);
}

TEST_F(SupervisorTest, AnIncompatibleWorkerBinaryRefusesTheReload) {
  start();
  world_->run_result = {1, "incompatible: layout version 999\n"};
  supervisor_->handle_signal(SIGHUP);
  EXPECT_FALSE(supervisor_->reloading());
  EXPECT_TRUE(world_->signals.empty());
  EXPECT_EQ(reloads(metrics::kReloadsRefused), 1u);
  EXPECT_EQ(reloads(metrics::kReloadsApplied), 0u);
}

TEST_F(SupervisorTest, SighupWhileDrainingIsIgnored) {
  start({"--drain-wait", "10"});
  supervisor_->handle_signal(SIGTERM);
  supervisor_->handle_signal(SIGHUP);
  EXPECT_TRUE(world_->runs.empty());
  EXPECT_FALSE(supervisor_->reloading());
}

// The real processes: the layout check (and any command) runs by fork +
// exec of an argv, with no shell between.
TEST(SupervisorProcesses, RunCapturesOutputAndExitCodeWithoutAShell) {
  auto processes = system_processes();
  const RunResult ok =
      processes->run({"/bin/echo", "a;b", "$HOME", "`x`"}, std::chrono::seconds(5));
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.output, "a;b $HOME `x`\n") << "arguments reach the program as they are";
  const RunResult err =
      processes->run({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, std::chrono::seconds(5));
  EXPECT_EQ(err.exit_code, 3);
  EXPECT_EQ(err.output, "out\nerr\n");
}

TEST(SupervisorProcesses, RunSaysWhenTheProgramIsMissingOrTooSlow) {
  auto processes = system_processes();
  const RunResult missing = processes->run({"/nonexistent/gatehouse-worker", "--check-layout", "x"},
                                           std::chrono::seconds(5));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.output, ::testing::HasSubstr("/nonexistent/gatehouse-worker"));
  const std::int64_t before = processes->now_ns();
  const RunResult slow = processes->run({"/bin/sleep", "10"}, std::chrono::milliseconds(100));
  EXPECT_EQ(slow.exit_code, -1);
  EXPECT_THAT(slow.output, ::testing::HasSubstr("did not answer within 100 ms"));
  EXPECT_LT(processes->now_ns() - before, 5'000 * kMs);
}

// A reaped child says what CPU it spent: a restarted worker's
// process_cpu_seconds_total goes on from it instead of going back to zero.
TEST(SupervisorProcesses, AReapedChildSaysWhatCpuItSpent) {
  auto processes = system_processes();
  const pid_t pid = processes->spawn(
      {"/bin/sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exit 7"}, {});
  ASSERT_GT(pid, 0);
  std::optional<Exit> exit;
  const std::int64_t deadline = processes->now_ns() + 60'000 * kMs;
  while (!(exit = processes->reap()) && processes->now_ns() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->pid, pid);
  ASSERT_TRUE(WIFEXITED(exit->status));
  EXPECT_EQ(WEXITSTATUS(exit->status), 7);
  EXPECT_GT(exit->cpu_seconds, 0.05) << "300k shell loop iterations take CPU time";
}

}  // namespace
}  // namespace gatehouse::supervisor
