// TLS for the tls and wss listeners (docs/websocket.md): a server context
// made from a PEM certificate chain and its private key, as the frontend
// serves with it and `gatehouse --check` proves it loads. OpenSSL does the
// TLS (through Boost.Asio's ssl); this only loads and checks the files.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

namespace gatehouse::net {

/// TLS 1.2 and later, no renegotiation, no compression; the chain in `cert`,
/// the key in `key` (which must match it, and which others than its owner
/// and group may not read). Throws std::runtime_error naming the file and
/// what is wrong with it.
std::shared_ptr<boost::asio::ssl::context> load_server_tls(const std::string& cert,
                                                           const std::string& key);

}  // namespace gatehouse::net
