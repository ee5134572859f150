// ring_peer: the other process of the cross-process ring tests. The test
// creates the segment and fork/execs this with a role:
//
//   ring_peer produce --segment S --region R --first SEQ --count N
//                     --max-length L [--fixed 1] [--batch B] [--doorbell FD]
//                     [--pause-us U]
//       writes records first..first+N-1 (N = 0: until killed), publishing
//       every B records; spins (never blocks) while the ring is full.
//   ring_peer consume --segment S --region R --first SEQ --count N
//                     --max-length L [--commit-every K] [--delay-us U] [--park FD]
//       (--fixed 1: every record is L bytes long.)
//       reads and checks N records starting at seq `first`, committing every
//       K; with --park it parks on doorbell FD when idle and exits 3 if a park
//       times out while the producer is still sending (a lost wakeup).
//
// Exit status: 0 done, 1 bad record, 2 bad usage, 3 lost wakeup.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/segment.h"
#include "ring_test_records.h"

namespace {

using namespace gatehouse::shm;

std::map<std::string, std::string> parse(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 2; i + 1 < argc; i += 2) args[argv[i]] = argv[i + 1];
  return args;
}

std::uint64_t number(const std::map<std::string, std::string>& args, const std::string& key,
                     std::uint64_t fallback) {
  const auto it = args.find(key);
  return it == args.end() ? fallback : std::stoull(it->second);
}

int produce(const std::map<std::string, std::string>& args, SpscRing ring) {
  const std::uint64_t first = number(args, "--first", 0);
  const std::uint64_t count = number(args, "--count", 0);
  const testing::RecordShape shape{number(args, "--max-length", 64), args.contains("--fixed")};
  const std::uint64_t batch = number(args, "--batch", 32);
  const std::uint64_t pause_us = number(args, "--pause-us", 0);
  const int doorbell_fd = static_cast<int>(number(args, "--doorbell", 0));
  Doorbell doorbell = doorbell_fd > 0 ? Doorbell::adopt(doorbell_fd) : Doorbell();
  RingProducer producer(ring, doorbell_fd > 0 ? &doorbell : nullptr);
  std::minstd_rand rng(static_cast<unsigned>(::getpid()));

  std::uint64_t in_batch = 0;
  for (std::uint64_t seq = first; count == 0 || seq < first + count;) {
    if (testing::write_record(producer, seq, shape) == WriteStatus::kFull) {
      producer.publish();
      in_batch = 0;
      std::this_thread::yield();  // tests share 2 cores with other tests
      continue;
    }
    ++seq;
    if (++in_batch == batch) {
      producer.publish();
      in_batch = 0;
      if (pause_us != 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % pause_us));
    }
  }
  producer.publish();
  return 0;
}

int consume(const std::map<std::string, std::string>& args, SpscRing ring) {
  std::uint64_t expected = number(args, "--first", 0);
  const std::uint64_t last = expected + number(args, "--count", 0);
  const testing::RecordShape shape{number(args, "--max-length", 64), args.contains("--fixed")};
  const std::size_t commit_every = number(args, "--commit-every", 256);
  const std::uint64_t delay_us = number(args, "--delay-us", 0);
  const int park_fd = static_cast<int>(number(args, "--park", 0));
  Doorbell doorbell = park_fd > 0 ? Doorbell::adopt(park_fd) : Doorbell();
  RingConsumer consumer(ring);
  BackoffIdler idler(
      {.spin = std::chrono::microseconds(5), .yields = 0, .park_timeout = std::chrono::seconds(2)});
  bool lost_wakeup = false;

  while (expected < last && !lost_wakeup) {
    const std::size_t n = consumer.read(
        [&](const Record& r) {
          if (const std::string error = testing::check_record(r, expected, shape); !error.empty()) {
            std::fprintf(stderr, "ring_peer: %s\n", error.c_str());
            std::exit(1);
          }
          ++expected;
          if (delay_us != 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
        },
        std::min<std::uint64_t>(commit_every, last - expected));
    consumer.heartbeat(std::chrono::steady_clock::now().time_since_epoch().count());
    if (park_fd <= 0) {
      if (n == 0) std::this_thread::yield();
      continue;
    }
    idler.idle(n, [&](std::chrono::nanoseconds timeout) {
      if (!consumer.prepare_park()) return;
      if (!doorbell.wait(timeout)) lost_wakeup = !consumer.empty() || expected < last;
      consumer.unpark();
    });
  }
  if (lost_wakeup) {
    std::fprintf(stderr, "ring_peer: parked for 2 s with the producer still sending\n");
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string role = argv[1];
  const auto args = parse(argc, argv);
  try {
    Segment segment = Segment::attach(args.at("--segment"), testing::kRingTestLayout);
    SpscRing ring = SpscRing::attach(segment.region(args.at("--region")));
    if (role == "produce") return produce(args, ring);
    if (role == "consume") return consume(args, ring);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ring_peer: %s\n", e.what());
  }
  return 2;
}
