#include "gatehouse/net/tls_context.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace gatehouse::net {

namespace asio = boost::asio;

std::shared_ptr<asio::ssl::context> load_server_tls(const std::string& cert,
                                                    const std::string& key) {
  if (cert.empty() || key.empty()) {
    throw std::runtime_error("tls-cert and tls-key are both needed by tls and wss listeners");
  }
  struct stat st {};
  if (::stat(key.c_str(), &st) != 0) {
    throw std::runtime_error("tls-key " + key + ": " + std::strerror(errno));
  }
  // Group-readable is Debian's convention (ssl-cert); anyone else is not.
  if ((st.st_mode & S_IRWXO) != 0) {
    throw std::runtime_error("tls-key " + key +
                             ": others may read it (chmod o-rwx, e.g. 0640 with group ssl-cert)");
  }
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1 | asio::ssl::context::no_compression |
                       asio::ssl::context::single_dh_use);
  SSL_CTX* ctx = context->native_handle();
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // A session cache per process serves a client's reconnects within the
  // frontend; tickets let them resume without it.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  // An idle connection gives its record buffers (~34 KiB) back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  boost::system::error_code ec;
  context->use_certificate_chain_file(cert, ec);
  if (ec) throw std::runtime_error("tls-cert " + cert + ": " + ec.message());
  context->use_private_key_file(key, asio::ssl::context::pem, ec);
  if (ec) {
    throw std::runtime_error("tls-key " + key + ": " + ec.message() +
                             " (is it the key of the certificate in " + cert + "?)");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    throw std::runtime_error("tls-key " + key + " is not the key of the certificate in " + cert);
  }
  return context;
}

asio::ssl::context client_tls(const std::string& ca_file) {
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                      asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (!ca_file.empty()) {
    context.load_verify_file(ca_file, ec);
    if (ec) throw std::runtime_error("tls-ca " + ca_file + ": " + ec.message());
  } else {
    context.set_default_verify_paths(ec);  // none: every certificate fails the check
  }
  return context;
}

void check_server_as(SSL* ssl, const std::string& name, bool insecure) {
  boost::system::error_code not_an_address;
  asio::ip::make_address(name, not_an_address);
  // SSL_set_tlsext_host_name() without its macro's C cast.
  if (not_an_address && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                                 const_cast<char*>(name.c_str())) != 1) {
    throw std::runtime_error("TLS: server name " + name + " refused by OpenSSL");
  }
  if (insecure) {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    return;
  }
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  const int expected = not_an_address
                           ? X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size())
                           : X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  if (expected != 1) throw std::runtime_error("TLS: server name " + name + " refused by OpenSSL");
  SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
}

}  // namespace gatehouse::net
