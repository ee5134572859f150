// TLS for the tls and wss listeners (docs/websocket.md): a server context
// made from a PEM certificate chain and its private key, as the frontend
// serves with it and `gatehouse --check` proves it loads; and the client's
// side, shared by gw::client and the load generator: a context that trusts
// given CA certificates, and the check of the server's name. OpenSSL does
// the TLS (through Boost.Asio's ssl); this only loads files and sets checks.
#pragma once

#include <openssl/ssl.h>

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

/// A client's context: TLS 1.2 and later; the server's certificate must
/// chain to the CA certificates in `ca_file` (PEM), or to the system's when
/// it is empty. Throws std::runtime_error naming the file.
boost::asio::ssl::context client_tls(const std::string& ca_file);

/// Before a client's handshake on `ssl`: `name` goes out as SNI (unless it
/// is an IP address) and the handshake fails unless the server's
/// certificate is valid for it (a DNS name or an IP address); `insecure`:
/// no check at all (a test gateway's own certificate). Throws
/// std::runtime_error when OpenSSL refuses the name.
void check_server_as(SSL* ssl, const std::string& name, bool insecure);

}  // namespace gatehouse::net
