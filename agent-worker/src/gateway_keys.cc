#include "gatehouse/worker/gateway_keys.h"

#include <string>
#include <vector>

namespace gatehouse::worker {

modern::GatewayKeyring load_gateway_keys(const Settings& settings) {
  std::vector<std::string> paths;
  for (std::uint32_t i = 0; i < settings.gateway_key_count && i < kMaxGatewayKeys; ++i) {
    paths.emplace_back(settings.gateway_keys[i]);
  }
  return modern::GatewayKeyring::load(paths);
}

}  // namespace gatehouse::worker
