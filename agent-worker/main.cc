// gatehouse-worker: started by the supervisor, never by hand.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "gatehouse/base/child_process_args.h"
#include "gatehouse/base/log.h"
#include "gatehouse/contract/layout.h"
#include "gatehouse/worker/gateway_keys.h"
#include "gatehouse/worker/worker.h"

namespace {
gatehouse::worker::Worker* g_worker = nullptr;
}

/// `gatehouse-worker --check-layout SEGMENT`: can this binary take over the
/// live segment's workers? The supervisor asks before a rolling reload, so a
/// worker built for another shm layout is refused while the old ones run.
int check_layout(const std::string& segment_name) {
  try {
    const auto segment = gatehouse::GatewaySegment::attach(segment_name);
    (void)segment.sessions();  // checks the slot size against this build's Session
    (void)segment.journal(0);  // and the journal region against its Journal
    std::printf("compatible with %s (layout version %u)\n", segment_name.c_str(),
                gatehouse::kLayoutVersion);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "incompatible: %s\n", e.what());
    return 1;
  }
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--check-layout") return check_layout(argv[2]);
  try {
    const gatehouse::ChildArgs args = gatehouse::parse_child_args(argc, argv);
    auto segment = gatehouse::GatewaySegment::attach(args.segment);
    const auto& settings = segment.settings();
    if (args.index >= settings.workers) throw std::invalid_argument("--index out of range");
    // Each frontend's doorbell, then each bridge's.
    if (args.peer_doorbells.size() != settings.frontends + settings.bridges) {
      throw std::invalid_argument("--peer-doorbells needs each frontend's and each bridge's");
    }
    gatehouse::init_logging("worker-" + std::to_string(args.index),
                            static_cast<spdlog::level::level_enum>(settings.log_level));
    using gatehouse::shm::Doorbell;
    std::vector<Doorbell> frontends;
    std::vector<Doorbell> bridges;
    for (std::uint32_t p = 0; p < args.peer_doorbells.size(); ++p) {
      (p < settings.frontends ? frontends : bridges)
          .push_back(Doorbell::adopt(args.peer_doorbells[p]));
    }
    gatehouse::worker::Worker worker(segment, args.index, Doorbell::adopt(args.doorbell),
                                     std::move(frontends), std::move(bridges),
                                     gatehouse::worker::make_login_provider(settings),
                                     gatehouse::worker::load_gateway_keys(settings));
    g_worker = &worker;
    std::signal(SIGTERM, [](int) { g_worker->request_stop(); });
    std::signal(SIGINT, SIG_IGN);
    return worker.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatehouse-worker: %s\n", e.what());
    return 1;
  }
}
