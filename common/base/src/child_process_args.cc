#include "gatehouse/base/child_process_args.h"

#include <stdexcept>

namespace gatehouse {

std::vector<int> parse_fd_list(const std::string& list) {
  std::vector<int> fds;
  std::size_t start = 0;
  while (start <= list.size() && !list.empty()) {
    const std::size_t comma = list.find(',', start);
    const std::string item = list.substr(start, comma == std::string::npos ? comma : comma - start);
    std::size_t used = 0;
    const int fd = std::stoi(item, &used);
    if (used != item.size() || fd < 0) throw std::invalid_argument("bad fd list: " + list);
    fds.push_back(fd);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return fds;
}

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
    } else if (key == "--udp-fds") {
      args.udp_fds = parse_fd_list(value);
    } else {
      throw std::invalid_argument("unknown argument " + key);
    }
  }
  if (args.segment.empty()) throw std::invalid_argument("--segment is required");
  return args;
}

}  // namespace gatehouse
