// gatehouse-frontend: started by the supervisor, never by hand.
#include <csignal>
#include <cstdio>

#include "gatehouse/base/child_process_args.h"
#include "gatehouse/base/log.h"
#include "gatehouse/frontend/frontend.h"

namespace {
gatehouse::frontend::Frontend* g_frontend = nullptr;
}

int main(int argc, char** argv) {
  try {
    const gatehouse::ChildArgs args = gatehouse::parse_child_args(argc, argv);
    auto segment = gatehouse::GatewaySegment::attach(args.segment);
    const auto settings = segment.settings();
    // As the supervisor names it: the first keeps the name it had alone.
    gatehouse::init_logging(
        args.index == 0 ? std::string("frontend") : "frontend-" + std::to_string(args.index),
        static_cast<spdlog::level::level_enum>(settings.log_level));
    std::vector<gatehouse::shm::Doorbell> workers;
    for (const int fd : args.peer_doorbells) workers.push_back(gatehouse::shm::Doorbell::adopt(fd));
    gatehouse::frontend::Frontend frontend(segment, args.index, args.listen_fds,
                                           gatehouse::shm::Doorbell::adopt(args.doorbell),
                                           std::move(workers), args.udp_fds);
    g_frontend = &frontend;
    std::signal(SIGTERM, [](int) { g_frontend->request_drain(); });
    std::signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the supervisor, which drains us
    std::signal(SIGPIPE, SIG_IGN);
    return frontend.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatehouse-frontend: %s\n", e.what());
    return 1;
  }
}
