// gatehouse-ring-bench: throughput and round-trip latency of the shm SPSC ring
// between two processes, set up the way the gateway uses it: the parent owns
// a Segment whose regions are formatted as rings, fork()s, and the child
// attaches to the segment by name. Threads would share more than processes do
// (page tables, the allocator), so they would not measure the same thing.
//
// Scenarios (one JSON object per run on its own stdout line):
//   throughput       child produces as fast as it can (publish every 64
//                    records), parent consumes and checks the sequence number
//                    in each payload; 32, 256 and 4096 byte payloads.
//   pingpong         one 32-byte message in flight over two rings, both sides
//                    busy-spin; every round trip is a sample.
//   pingpong_parked  as pingpong, but the responder parks on its Doorbell
//                    whenever its ring is empty, so each sample includes the
//                    wakeup of a sleeping consumer.
//
// Every run also reports line_rt_ns: the median round trip of one bare cache
// line between the same two CPUs, measured just before and just after it.
// That is the hardware floor under the ring; on a VM it moves (see
// line_round_trip_ns), and a figure means little without the floor it was
// measured on. producer_full and consumer_empty_polls say which side of a
// throughput run was the bottleneck: a consumer that keeps finding the ring
// empty is waiting for the producer, a producer that keeps finding it full is
// waiting for the consumer. preemptions counts the involuntary context
// switches of both processes during the run: well above zero means something
// else wanted their CPUs, and the run measured that too.
//
// Exit status: 0 when every run completed without payload errors, 1 when a
// run saw errors or its child failed, 2 on a usage error.

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "gatehouse/shm/doorbell.h"
#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/segment.h"
#include "gatehouse/shm/spsc_ring.h"

namespace {

namespace shm = gatehouse::shm;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

// 4 MiB: max_payload_for() allows an eighth of the capacity, and the 4 KiB
// records should leave room for hundreds in flight so a throughput run
// measures the ring, not a producer that keeps stalling on a full buffer.
constexpr std::size_t kRingCapacity = std::size_t{4} << 20;
/// The layout version of the benchmark's own segment (shm versions nothing itself).
constexpr std::uint32_t kBenchLayout = 1;
static_assert(shm::SpscRing::max_payload_for(kRingCapacity) >= std::size_t{8} * 4096);

constexpr std::array<std::size_t, 3> kThroughputBytes = {32, 256, 4096};
constexpr std::uint32_t kPublishBatch = 64;  // records per publish()
constexpr std::size_t kReadLimit = 256;      // records per read() (one commit each)
constexpr std::size_t kPingBytes = 32;
constexpr std::size_t kPingPongSamples = 1'000'000;
constexpr std::size_t kParkedSamples = 20'000;
constexpr auto kMaxWarmup = std::chrono::milliseconds(200);
// A peer that makes no progress for this long is stuck, not slow.
constexpr auto kStallTimeout = std::chrono::seconds(10);
// The parked responder re-checks its ring this often even if a wakeup were
// lost, so a lost wakeup shows as a ~100 ms sample instead of a hang.
constexpr auto kParkTimeout = std::chrono::milliseconds(100);

constexpr std::uint32_t kDataType = 1;
constexpr std::uint32_t kStopType = 2;

constexpr std::string_view kControlRegion = "control";
constexpr std::string_view kRingRegions[] = {"ring_a", "ring_b"};

// Written to by the consumer when --touch all, so the compiler cannot drop
// the loop that reads every payload byte.
volatile std::uint64_t g_sink = 0;

// The segment path for the signal handler: shm_unlink is async-signal-safe,
// Segment's destructor is not something to run from a handler.
char g_segment_path[96] = {};

/// Out-of-band state shared by the two processes of a run. The parent writes
/// `stop`, the child writes the rest, so they live on different lines.
struct Control {
  alignas(shm::kFalseSharingRange) std::atomic<std::uint32_t> stop{0};
  alignas(shm::kFalseSharingRange) std::atomic<std::uint64_t> child_errors{0};
};

enum class Touch : std::uint8_t { kSequence, kAll };

struct Options {
  double seconds = 1.0;
  std::string scenario = "all";
  int runs = 1;
  Touch touch = Touch::kSequence;
};

struct Placement {
  bool pinned = false;
  int parent_cpu = -1;
  int child_cpu = -1;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "gatehouse-ring-bench: %s (try --help)\n", message.c_str());
  std::exit(2);
}

void print_help() {
  std::printf(
      "usage: gatehouse-ring-bench [--seconds S] [--scenario NAME] [--runs N] [--touch seq|all]\n"
      "\n"
      "Measures the shm SPSC ring between two processes (fork, one Segment).\n"
      "\n"
      "  --seconds S      measured time per run after a short warm-up (default 1.0)\n"
      "  --scenario NAME  all | throughput | pingpong | pingpong_parked (default all)\n"
      "  --runs N         repeat each scenario N times, printing every run (default 1)\n"
      "  --touch seq|all  what the throughput consumer reads of each payload: the\n"
      "                   u64 sequence number only (default) or every byte\n"
      "  --help           this text\n"
      "\n"
      "Prints one JSON object per run on stdout. line_rt_ns is the median round trip\n"
      "of a bare cache line between the two CPUs before and after the run (the\n"
      "hardware floor, which moves on a VM). Exits 1 if any run saw payload errors\n"
      "or its child process failed.\n");
}

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      has_value = true;
    }
    auto take_value = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      print_help();
      std::exit(0);
    } else if (arg == "--seconds") {
      const std::string v = take_value();
      char* end = nullptr;
      options.seconds = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !std::isfinite(options.seconds) ||
          options.seconds <= 0 || options.seconds > 3600) {
        usage_error("--seconds wants a number in (0, 3600], got '" + v + "'");
      }
    } else if (arg == "--scenario") {
      options.scenario = take_value();
      if (options.scenario != "all" && options.scenario != "throughput" &&
          options.scenario != "pingpong" && options.scenario != "pingpong_parked") {
        usage_error("unknown scenario '" + options.scenario + "'");
      }
    } else if (arg == "--runs") {
      const std::string v = take_value();
      char* end = nullptr;
      const long runs = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || runs < 1 || runs > 1000) {
        usage_error("--runs wants an integer in [1, 1000], got '" + v + "'");
      }
      options.runs = static_cast<int>(runs);
    } else if (arg == "--touch") {
      const std::string v = take_value();
      if (v == "seq") {
        options.touch = Touch::kSequence;
      } else if (v == "all") {
        options.touch = Touch::kAll;
      } else {
        usage_error("--touch wants seq or all, got '" + v + "'");
      }
    } else {
      usage_error("unknown argument '" + arg + "'");
    }
  }
  return options;
}

// ------------------------------------------------------------------ processes

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<std::size_t>(cpu), &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

/// Pins this process to the first allowed CPU and picks the second for the
/// children, so producer and consumer never share a core (on one core the
/// spinning side would just burn the other's time slice).
Placement place_processes() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return {};
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
    if (CPU_ISSET(static_cast<std::size_t>(cpu), &allowed)) cpus.push_back(cpu);
  }
  if (cpus.size() < 2 || !pin_to(cpus[0])) return {};
  return {true, cpus[0], cpus[1]};
}

/// A forked child of this process; killed and reaped if still running when
/// destroyed, so an exception in the parent never leaves a spinning child.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (reaped_) return;
    ::kill(pid_, SIGKILL);
    try {
      wait();
    } catch (const std::exception&) {
      // Nothing left to do from a destructor; the kernel reaps the zombie
      // when this process exits.
    }
  }

  /// True while the child runs; reaps it once it has ended.
  bool running() {
    if (!reaped_) reap(WNOHANG);
    return !reaped_;
  }

  /// Waits for the child to end; true when it exited with status 0.
  bool wait() {
    while (!reaped_) reap(0);
    return WIFEXITED(status_) && WEXITSTATUS(status_) == 0;
  }

  /// Times the reaped child was preempted (involuntary context switches).
  std::int64_t preemptions() const { return preemptions_; }

  std::string describe() const {
    if (!reaped_) return "still running";
    if (WIFEXITED(status_)) return "exited " + std::to_string(WEXITSTATUS(status_));
    if (WIFSIGNALED(status_)) return "killed by signal " + std::to_string(WTERMSIG(status_));
    return "status " + std::to_string(status_);
  }

 private:
  void reap(int options) {
    int status = 0;
    rusage usage{};
    const pid_t r = ::wait4(pid_, &status, options, &usage);
    if (r == pid_) {
      status_ = status;
      preemptions_ = usage.ru_nivcsw;
      reaped_ = true;
    } else if (r < 0 && errno != EINTR) {
      throw std::system_error(errno, std::generic_category(), "wait4");
    }
  }

  pid_t pid_;
  int status_ = 0;
  std::int64_t preemptions_ = 0;
  bool reaped_ = false;
};

/// Involuntary context switches of this process so far. A pinned spinning
/// process that gets preempted was sharing its CPU with something else, and
/// its run says more about that than about the ring.
std::int64_t own_preemptions() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_nivcsw;
}

/// Forks a child that runs `body()` pinned to `cpu` (when >= 0) and leaves
/// with its return value. The child ends with _exit and never returns into
/// main: it must not run the destructors of the parent's objects it got a
/// copy of (the owner Segment would unlink the segment) nor flush their
/// stdio buffers a second time.
template <class Body>
pid_t spawn_child(int cpu, Body&& body) {
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid != 0) return pid;

  int status = 2;
  try {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    // The child must not outlive the parent; the getppid() check closes the
    // race with a parent that died before prctl().
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(2);
    if (cpu >= 0 && !pin_to(cpu)) {
      std::fprintf(stderr, "gatehouse-ring-bench (child): cannot pin to CPU %d\n", cpu);
    }
    status = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatehouse-ring-bench (child): %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "gatehouse-ring-bench (child): unknown exception\n");
  }
  std::fflush(stderr);
  ::_exit(status);
}

void remove_segment_on_signal(int sig) {
  if (g_segment_path[0] != '\0') ::shm_unlink(g_segment_path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// -------------------------------------------------------------------- segment

std::string segment_name() {
  return "gatehouse-ring-bench." + std::to_string(::getpid());
}

/// A fresh segment per run: cursors start at 0 and no record of an earlier
/// run can be mistaken for one of this run.
shm::Segment create_segment(std::size_t ring_count) {
  std::vector<shm::RegionSpec> specs;
  specs.push_back({std::string(kControlRegion), sizeof(Control),
                   [](std::span<std::byte> region) { new (region.data()) Control{}; }});
  for (std::size_t i = 0; i < ring_count; ++i) {
    specs.push_back(
        {std::string(kRingRegions[i]), shm::SpscRing::region_bytes(kRingCapacity),
         [](std::span<std::byte> region) { shm::SpscRing::initialise(region, kRingCapacity); }});
  }
  const std::string name = segment_name();
  std::snprintf(g_segment_path, sizeof g_segment_path, "/%s", name.c_str());
  return shm::Segment::create(name, kBenchLayout, specs);
}

Control& control_of(const shm::Segment& segment) {
  return *std::launder(reinterpret_cast<Control*>(segment.region(kControlRegion).data()));
}

shm::SpscRing ring_of(const shm::Segment& segment, std::size_t i) {
  return shm::SpscRing::attach(segment.region(kRingRegions[i]));
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::uint64_t read_sequence(std::span<const std::byte> payload) {
  std::uint64_t seq;
  std::memcpy(&seq, payload.data(), sizeof seq);
  return seq;
}

std::uint64_t sum_words(std::span<const std::byte> payload) {
  std::uint64_t sum = 0;
  std::size_t i = 0;
  for (; i + 8 <= payload.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, payload.data() + i, sizeof word);
    sum += word;
  }
  for (; i < payload.size(); ++i) sum += std::to_integer<std::uint64_t>(payload[i]);
  return sum;
}

/// Throws when the peer has died or made no progress for kStallTimeout.
/// Called only after many empty polls, so its syscall stays off the hot path.
void check_peer(Child& child, Clock::time_point last_progress, const char* waiting_for) {
  if (!child.running()) {
    throw std::runtime_error(std::string("child ") + child.describe() + " while waiting for " +
                             waiting_for);
  }
  if (Clock::now() - last_progress > kStallTimeout) {
    throw std::runtime_error(std::string("no progress for 10 s while waiting for ") + waiting_for);
  }
}

// ---------------------------------------------------------------- calibration

/// Median round trip of one bare cache line between the parent's and the
/// child's CPU: the floor under any cross-process message. On a VM it is not
/// a constant (the host moves the vCPUs between cores and dies; on the
/// reference machine it jumps between ~70, ~160 and ~550 ns from one minute
/// to the next), so every run reports it taken just before and just after,
/// and a figure can be read against the floor it was measured on.
std::int64_t line_round_trip_ns(const Placement& placement) {
  struct alignas(shm::kFalseSharingRange) Flag {
    std::atomic<std::uint64_t> value{0};
  };
  constexpr std::uint64_t kRounds = 20'000;
  constexpr std::uint64_t kWarmupRounds = 2'000;
  struct Mapping {
    void* address;
    ~Mapping() { ::munmap(address, sizeof(Flag) * 2); }
  };
  void* const address =
      ::mmap(nullptr, sizeof(Flag) * 2, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (address == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  const Mapping mapping{address};
  Flag& ping = *new (address) Flag;
  Flag& pong = *new (static_cast<std::byte*>(address) + sizeof(Flag)) Flag;

  Child child(spawn_child(placement.child_cpu, [&] {
    for (std::uint64_t i = 1; i <= kRounds; ++i) {
      while (ping.value.load(std::memory_order_acquire) != i) {
      }
      pong.value.store(i, std::memory_order_release);
    }
    return 0;
  }));
  std::vector<std::int64_t> samples(kRounds - kWarmupRounds, 0);
  for (std::uint64_t i = 1; i <= kRounds; ++i) {
    const Clock::time_point start = Clock::now();
    ping.value.store(i, std::memory_order_release);
    for (std::uint32_t spins = 1; pong.value.load(std::memory_order_acquire) != i; ++spins) {
      if (spins % (1u << 20) == 0) check_peer(child, start, "the calibration child");
    }
    const Clock::time_point end = Clock::now();
    if (i > kWarmupRounds) {
      samples[i - kWarmupRounds - 1] = std::chrono::duration_cast<nanoseconds>(end - start).count();
    }
  }
  if (!child.wait()) throw std::runtime_error("calibration child " + child.describe());
  const auto middle = samples.begin() + static_cast<std::ptrdiff_t>(samples.size() / 2);
  std::nth_element(samples.begin(), middle, samples.end());
  return *middle;
}

// ----------------------------------------------------------------- throughput

struct ThroughputResult {
  std::uint64_t messages = 0;
  double seconds = 0;
  std::uint64_t errors = 0;
  std::uint64_t producer_full = 0;  // writes the producer found the ring full for
  std::uint64_t empty_polls = 0;    // reads the consumer found the ring empty for
  std::int64_t preemptions = 0;     // of both processes, over the whole run
};

int throughput_producer(const std::string& name, std::size_t bytes) {
  const shm::Segment segment = shm::Segment::attach(name, kBenchLayout);
  const Control& control = control_of(segment);
  shm::RingProducer producer(ring_of(segment, 0));
  std::vector<std::byte> payload(bytes, std::byte{0x5a});
  std::uint64_t seq = 0;
  while (control.stop.load(std::memory_order_relaxed) == 0) {
    bool full = false;
    for (std::uint32_t i = 0; i < kPublishBatch; ++i) {
      std::memcpy(payload.data(), &seq, sizeof seq);
      if (producer.try_write(kDataType, payload) != shm::WriteStatus::kOk) {
        full = true;
        break;
      }
      ++seq;
    }
    producer.publish();
    if (full) {
      // can_write() only reloads the consumer's head; try_write() would also
      // bump full_events on every pass, which would then count spins.
      while (!producer.can_write(bytes) && control.stop.load(std::memory_order_relaxed) == 0) {
        shm::cpu_relax();
      }
    }
  }
  return 0;
}

ThroughputResult run_throughput(const Options& options, const Placement& placement,
                                std::size_t bytes) {
  const std::int64_t preemptions_before = own_preemptions();
  const shm::Segment segment = create_segment(1);
  Control& control = control_of(segment);
  const shm::SpscRing ring = ring_of(segment, 0);
  const std::string& name = segment.name();
  Child child(spawn_child(placement.child_cpu, [&] { return throughput_producer(name, bytes); }));

  ThroughputResult result;
  shm::RingConsumer consumer(ring);
  std::uint64_t expected = 0;
  std::uint64_t received = 0;
  std::uint64_t sink = 0;
  const bool touch_all = options.touch == Touch::kAll;
  auto on_record = [&](const shm::Record& record) {
    if (record.type != kDataType || record.payload.size() != bytes) {
      ++result.errors;
      return;
    }
    // Producer and consumer are in lockstep on the sequence number: any gap,
    // repeat or garbled record shows up as a mismatch.
    const std::uint64_t seq = read_sequence(record.payload);
    if (seq != expected) ++result.errors;
    expected = seq + 1;
    if (touch_all) sink += sum_words(record.payload);
  };

  const auto measure =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));
  const auto warmup = std::min<Clock::duration>(kMaxWarmup, measure);
  enum class Phase { kStarting, kWarmup, kMeasuring } phase = Phase::kStarting;
  Clock::time_point phase_start = Clock::now();
  Clock::time_point last_progress = phase_start;
  std::uint64_t received_at_check = 0;
  std::uint64_t received_at_start = 0;
  std::uint64_t empty_at_start = 0;
  std::uint64_t empty_polls = 0;
  for (std::uint32_t iteration = 1;; ++iteration) {
    const std::size_t n = consumer.read(on_record, kReadLimit);
    received += n;
    if (n == 0) ++empty_polls;
    // The clock costs tens of ns; look at it every 256 reads (up to 64k
    // records, ~1 ms at full speed) and note exactly when and how many.
    if (iteration % 256 != 0) continue;
    const Clock::time_point now = Clock::now();
    if (received == received_at_check) {
      check_peer(child, last_progress, "records");
      continue;
    }
    received_at_check = received;
    last_progress = now;
    if (phase == Phase::kStarting) {
      // Warm-up starts with the first record, so the child's start-up (fork,
      // attach, first page faults) is never part of it.
      phase = Phase::kWarmup;
      phase_start = now;
    } else if (phase == Phase::kWarmup && now - phase_start >= warmup) {
      phase = Phase::kMeasuring;
      phase_start = now;
      received_at_start = received;
      empty_at_start = empty_polls;
      result.producer_full = ring.descriptor().full_events.load(std::memory_order_relaxed);
    } else if (phase == Phase::kMeasuring && now - phase_start >= measure) {
      result.messages = received - received_at_start;
      result.seconds = seconds_between(phase_start, now);
      result.empty_polls = empty_polls - empty_at_start;
      result.producer_full =
          ring.descriptor().full_events.load(std::memory_order_relaxed) - result.producer_full;
      break;
    }
  }
  control.stop.store(1, std::memory_order_relaxed);
  g_sink = sink;
  if (!child.wait()) throw std::runtime_error("producer child " + child.describe());
  result.preemptions = own_preemptions() - preemptions_before + child.preemptions();
  return result;
}

// ------------------------------------------------------------------ ping-pong

struct LatencyResult {
  std::vector<std::int64_t> samples;  // round trips in ns, sorted
  std::uint64_t errors = 0;
  std::uint64_t child_errors = 0;
  std::int64_t preemptions = 0;  // of both processes, over the whole run
};

/// Echoes every record of ring 0 back on ring 1 until a stop record. When
/// `doorbell` is set it parks on it whenever ring 0 is empty; otherwise it
/// busy-spins.
int responder(const std::string& name, const shm::Doorbell* doorbell) {
  const shm::Segment segment = shm::Segment::attach(name, kBenchLayout);
  Control& control = control_of(segment);
  shm::RingConsumer from_parent(ring_of(segment, 0));
  shm::RingProducer to_parent(ring_of(segment, 1));  // the parent spins: no doorbell
  bool stop = false;
  std::uint64_t expected = 0;
  std::uint64_t errors = 0;
  auto on_ping = [&](const shm::Record& record) {
    if (record.type == kStopType) {
      stop = true;
      return;
    }
    if (record.type != kDataType || record.payload.size() != kPingBytes ||
        read_sequence(record.payload) != expected) {
      ++errors;
    }
    ++expected;
    if (to_parent.try_write(kDataType, record.payload) != shm::WriteStatus::kOk) ++errors;
    to_parent.publish();
  };

  if (doorbell == nullptr) {
    while (!stop) from_parent.read(on_ping, kReadLimit);
  } else {
    // No spin or yield budget: every empty poll parks, so every ping has to
    // wake a sleeping process. That is the figure this scenario is for.
    shm::BackoffIdler idler(
        shm::BackoffIdler::Config{.spin = {}, .yields = 0, .park_timeout = kParkTimeout});
    auto park = [&](nanoseconds timeout) {
      if (from_parent.prepare_park()) doorbell->wait(timeout);
      from_parent.unpark();
    };
    while (!stop) idler.idle(from_parent.read(on_ping, kReadLimit), park);
  }
  control.child_errors.store(errors, std::memory_order_relaxed);
  return errors == 0 ? 0 : 3;
}

LatencyResult run_pingpong(const Options& options, const Placement& placement, bool parked) {
  const std::int64_t preemptions_before = own_preemptions();
  const shm::Segment segment = create_segment(2);
  const Control& control = control_of(segment);
  // Created before fork so both processes hold the same eventfd.
  const shm::Doorbell doorbell = shm::Doorbell::create();
  const shm::Doorbell* responder_bell = parked ? &doorbell : nullptr;
  const std::string& name = segment.name();
  Child child(spawn_child(placement.child_cpu, [&] { return responder(name, responder_bell); }));

  LatencyResult result;
  shm::RingProducer to_child(ring_of(segment, 0), responder_bell);
  shm::RingConsumer from_child(ring_of(segment, 1));
  std::array<std::byte, kPingBytes> ping{};
  std::uint64_t seq = 0;
  auto on_pong = [&](const shm::Record& record) {
    if (record.type != kDataType || record.payload.size() != kPingBytes ||
        read_sequence(record.payload) != seq) {
      ++result.errors;
    }
  };

  // One round trip, timed from before the write to after the reply was
  // read: what a caller that sends and waits would see.
  auto round_trip = [&]() -> std::int64_t {
    std::memcpy(ping.data(), &seq, sizeof seq);
    const Clock::time_point start = Clock::now();
    if (to_child.try_write(kDataType, ping) != shm::WriteStatus::kOk) ++result.errors;
    to_child.publish();
    // The reply is the only record in flight, so read() returning 1 is it.
    for (std::uint32_t spins = 1; from_child.read(on_pong, 1) == 0; ++spins) {
      if (spins % (1u << 20) == 0) check_peer(child, start, "a reply");
    }
    const Clock::time_point end = Clock::now();
    ++seq;
    return std::chrono::duration_cast<nanoseconds>(end - start).count();
  };

  const auto measure =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));
  const auto warmup = std::min<Clock::duration>(kMaxWarmup, measure);
  // The first round trip waits for the child to start; it and the warm-up
  // (page faults, caches, branch predictors, CPU frequency) are not sampled.
  round_trip();
  for (const Clock::time_point start = Clock::now(); Clock::now() - start < warmup;) round_trip();

  // Sized and touched up front: a page fault every 512 samples would
  // otherwise land in the tail being measured.
  const std::size_t max_samples = parked ? kParkedSamples : kPingPongSamples;
  std::vector<std::int64_t> samples(max_samples, 0);
  std::size_t count = 0;
  const Clock::time_point start = Clock::now();
  while (count < max_samples) {
    samples[count++] = round_trip();
    if (count % 1024 == 0 && Clock::now() - start >= measure) break;
  }
  samples.resize(count);

  const std::array<std::byte, 0> none{};
  if (to_child.try_write(kStopType, none) != shm::WriteStatus::kOk) ++result.errors;
  to_child.publish();
  if (!child.wait()) throw std::runtime_error("responder child " + child.describe());
  result.child_errors = control.child_errors.load(std::memory_order_relaxed);
  result.preemptions = own_preemptions() - preemptions_before + child.preemptions();
  std::sort(samples.begin(), samples.end());
  result.samples = std::move(samples);
  return result;
}

/// Nearest-rank percentile of sorted samples.
std::int64_t percentile(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

// ---------------------------------------------------------------------- main

bool wants(const Options& options, std::string_view scenario) {
  return options.scenario == "all" || options.scenario == scenario;
}

const char* json_bool(bool b) {
  return b ? "true" : "false";
}

int run(const Options& options) {
  const Placement placement = place_processes();
  bool failed = false;

  if (wants(options, "throughput")) {
    for (const std::size_t bytes : kThroughputBytes) {
      for (int run_index = 1; run_index <= options.runs; ++run_index) {
        const std::int64_t floor_before = line_round_trip_ns(placement);
        const ThroughputResult r = run_throughput(options, placement, bytes);
        const std::int64_t floor_after = line_round_trip_ns(placement);
        const double msgs_per_s = static_cast<double>(r.messages) / r.seconds;
        std::printf(
            "{\"scenario\":\"throughput\",\"bytes\":%zu,\"run\":%d,\"seconds\":%.3f,"
            "\"messages\":%llu,\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f,\"errors\":%llu,"
            "\"producer_full\":%llu,\"consumer_empty_polls\":%llu,\"touch\":\"%s\","
            "\"line_rt_ns\":[%lld,%lld],\"preemptions\":%lld,\"pinned\":%s}\n",
            bytes, run_index, r.seconds, static_cast<unsigned long long>(r.messages), msgs_per_s,
            msgs_per_s * static_cast<double>(bytes) / 1e6,
            static_cast<unsigned long long>(r.errors),
            static_cast<unsigned long long>(r.producer_full),
            static_cast<unsigned long long>(r.empty_polls),
            options.touch == Touch::kAll ? "all" : "seq", static_cast<long long>(floor_before),
            static_cast<long long>(floor_after), static_cast<long long>(r.preemptions),
            json_bool(placement.pinned));
        std::fflush(stdout);
        failed = failed || r.errors != 0;
      }
    }
  }

  for (const bool parked : {false, true}) {
    const char* scenario = parked ? "pingpong_parked" : "pingpong";
    if (!wants(options, scenario)) continue;
    for (int run_index = 1; run_index <= options.runs; ++run_index) {
      const std::int64_t floor_before = line_round_trip_ns(placement);
      const LatencyResult r = run_pingpong(options, placement, parked);
      const std::int64_t floor_after = line_round_trip_ns(placement);
      const std::uint64_t errors = r.errors + r.child_errors;
      std::printf(
          "{\"scenario\":\"%s\",\"bytes\":%zu,\"run\":%d,\"samples\":%zu,\"p50_ns\":%lld,"
          "\"p90_ns\":%lld,\"p99_ns\":%lld,\"p999_ns\":%lld,\"max_ns\":%lld,\"errors\":%llu,"
          "\"line_rt_ns\":[%lld,%lld],\"preemptions\":%lld,\"pinned\":%s}\n",
          scenario, kPingBytes, run_index, r.samples.size(),
          static_cast<long long>(percentile(r.samples, 0.50)),
          static_cast<long long>(percentile(r.samples, 0.90)),
          static_cast<long long>(percentile(r.samples, 0.99)),
          static_cast<long long>(percentile(r.samples, 0.999)),
          static_cast<long long>(r.samples.empty() ? 0 : r.samples.back()),
          static_cast<unsigned long long>(errors), static_cast<long long>(floor_before),
          static_cast<long long>(floor_after), static_cast<long long>(r.preemptions),
          json_bool(placement.pinned));
      std::fflush(stdout);
      failed = failed || errors != 0;
    }
  }
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  // Ctrl-C mid-run would otherwise leave the run's segment in /dev/shm.
  ::signal(SIGINT, remove_segment_on_signal);
  ::signal(SIGTERM, remove_segment_on_signal);
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatehouse-ring-bench: %s\n", e.what());
    return 1;
  }
}
