// The gateway's static keys for the modern exchange's version 2, read from
// the gateway-key files the settings name when a worker starts (as the login
// token file is), so a reload that rolls the workers brings new keys in.
#pragma once

#include "gatehouse/contract/control.h"
#include "gatehouse/crypto/gateway_key_file.h"

namespace gatehouse::worker {

/// Throws std::runtime_error naming a file that cannot be used.
modern::GatewayKeyring load_gateway_keys(const Settings& settings);

}  // namespace gatehouse::worker
