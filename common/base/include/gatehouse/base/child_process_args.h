// The command line the supervisor gives each child process:
//
//   gatehouse-<component> --segment NAME [--index N] [--doorbell FD]
//                         [--peer-doorbells FD,FD,...] [--listen-fds FD,...]
//                         [--udp-fds FD,...]
//
// Children take everything else from the segment's control block, so this is
// all they parse. Not meant to be typed by people.
#pragma once

#include <string>
#include <vector>

namespace gatehouse {

struct ChildArgs {
  std::string segment;
  unsigned index = 0;               ///< worker, frontend or bridge index
  int doorbell = -1;                ///< this process's eventfd
  std::vector<int> peer_doorbells;  ///< the doorbells of the processes it feeds
  std::vector<int> listen_fds;      ///< frontend only: TCP listeners
  std::vector<int> udp_fds;         ///< frontend only: UDP (KCP) listeners
};

/// Parses "a,b,c" of fds as passed by the supervisor; throws on garbage.
std::vector<int> parse_fd_list(const std::string& list);

/// Throws std::invalid_argument naming the bad argument.
ChildArgs parse_child_args(int argc, char** argv);

}  // namespace gatehouse
