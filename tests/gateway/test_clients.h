// Client-side helpers the gateway tests share: a logged-in client library
// session, and a one-message echo round trip through the fake game service.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include <gtest/gtest.h>

#include "gatehouse/client/client.h"
#include "patience.h"

namespace gatehouse::testing {

/// A client connected to 127.0.0.1:`port`, key-exchanged if `encrypt`, and
/// logged in with `udid` / `token` (failures are test failures).
inline std::unique_ptr<client::Client> logged_in_client(std::uint16_t port, std::string_view udid,
                                                        std::string_view token, bool encrypt) {
  auto c = std::make_unique<client::Client>();
  c->connect("127.0.0.1", port, kPatience);
  if (encrypt) {
    EXPECT_TRUE(c->key_exchange(kPatience).has_value());
  }
  EXPECT_TRUE(c->login(udid, token, kPatience).ok());
  return c;
}

/// Sends `text` as 1001 and expects the game's 1002 with the same body.
inline bool echo_works(client::Client& c, std::string_view text) {
  if (!c.send(1001, client::to_bytes(text))) return false;
  const auto reply = c.receive_proto(1002, kPatience);
  return reply && reply->body == client::to_bytes(text);
}

}  // namespace gatehouse::testing
