// A gRPC channel to one etcd endpoint (etcd-hosts), tuned for a client that
// must notice a dead etcd within seconds and be back soon after it returns:
// gRPC keepalive on the link (10 s, 5 s timeout), and reconnection from
// 200 ms doubling to 2 s (gRPC's default backoff grows to two minutes).
// Discovery (etcd_v3_wire) and the gateway's own key (etcd_registration.h)
// talk to etcd over it.
#pragma once

#include <memory>
#include <string>

namespace grpc {
class Channel;
}

namespace gatehouse::bridge {

/// An insecure channel to `target` (HOST:PORT; etcd-hosts is http only).
std::shared_ptr<grpc::Channel> etcd_channel(const std::string& target);

}  // namespace gatehouse::bridge
