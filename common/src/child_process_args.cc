#include "gatehouse/common/child_process_args.h"

#include <stdexcept>

#include "gatehouse/common/gateway_segment.h"

namespace gatehouse {

ChildArgs parse_child_args(int argc, char** argv) {
  ChildArgs args;
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(key + " needs a value");
    const std::string value = argv[i + 1];
    if (key == "--segment") {
      args.segment = value;
    } else if (key == "--index") {
      args.index = static_cast<unsigned>(std::stoul(value));
    } else if (key == "--doorbell") {
      args.doorbell = std::stoi(value);
    } else if (key == "--peer-doorbells") {
      args.peer_doorbells = parse_fd_list(value);
    } else if (key == "--listen-fds") {
      args.listen_fds = parse_fd_list(value);
    } else {
      throw std::invalid_argument("unknown argument " + key);
    }
  }
  if (args.segment.empty()) throw std::invalid_argument("--segment is required");
  return args;
}

}  // namespace gatehouse
