// gatehouse-worker: started by the supervisor, never by hand.
#include <csignal>
#include <cstdio>

#include "gatehouse/common/child_process_args.h"
#include "gatehouse/common/log.h"
#include "gatehouse/worker/worker.h"

namespace {
gatehouse::worker::Worker* g_worker = nullptr;
}

int main(int argc, char** argv) {
  try {
    const gatehouse::ChildArgs args = gatehouse::parse_child_args(argc, argv);
    if (args.peer_doorbells.size() != 2) {
      throw std::invalid_argument("--peer-doorbells needs the frontend's and the bridge's");
    }
    gatehouse::GatewaySegment segment(gatehouse::shm::Segment::attach(args.segment));
    const auto& settings = segment.settings();
    if (args.index >= settings.workers) throw std::invalid_argument("--index out of range");
    gatehouse::init_logging("worker-" + std::to_string(args.index),
                            static_cast<spdlog::level::level_enum>(settings.log_level));
    using gatehouse::shm::Doorbell;
    gatehouse::worker::Worker worker(segment, args.index, Doorbell::adopt(args.doorbell),
                                     Doorbell::adopt(args.peer_doorbells[0]),
                                     Doorbell::adopt(args.peer_doorbells[1]),
                                     gatehouse::worker::make_login_provider(settings));
    g_worker = &worker;
    std::signal(SIGTERM, [](int) { g_worker->request_stop(); });
    std::signal(SIGINT, SIG_IGN);
    return worker.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatehouse-worker: %s\n", e.what());
    return 1;
  }
}
