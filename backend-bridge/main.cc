// gatehouse-bridge: started by the supervisor, never by hand.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "gatehouse/base/child_process_args.h"
#include "gatehouse/base/log.h"
#include "gatehouse/bridge/bridge.h"

namespace {
gatehouse::bridge::Bridge* g_bridge = nullptr;
}

int main(int argc, char** argv) {
  try {
    const gatehouse::ChildArgs args = gatehouse::parse_child_args(argc, argv);
    auto segment = gatehouse::GatewaySegment::attach(args.segment);
    // The first bridge keeps the name it had before there were several.
    gatehouse::init_logging(
        args.index == 0 ? std::string("bridge") : "bridge-" + std::to_string(args.index),
        static_cast<spdlog::level::level_enum>(segment.settings().log_level));
    std::vector<gatehouse::shm::Doorbell> workers;
    for (const int fd : args.peer_doorbells) workers.push_back(gatehouse::shm::Doorbell::adopt(fd));
    gatehouse::bridge::Bridge bridge(
        segment, args.index, gatehouse::shm::Doorbell::adopt(args.doorbell), std::move(workers));
    g_bridge = &bridge;
    std::signal(SIGTERM, [](int) { g_bridge->request_stop(); });
    std::signal(SIGINT, SIG_IGN);
    return bridge.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatehouse-bridge: %s\n", e.what());
    return 1;
  }
}
