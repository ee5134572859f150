// The gateway's key files (docs/protocol-modern.md, "Keys and files"), all
// text: '#' lines and blank lines are comments, a key is 64 hex digits on a
// line of its own.
//
//   private key file (gatehouse keygen --out FILE; the gateway's gateway-key):
//     one X25519 secret key. Must be a regular file owned by the user reading
//     it and not readable by group or others (0600 or stricter): load refuses
//     anything else.
//   public key file (FILE.pub; a client's --gateway-key): one or more X25519
//     public keys the client pins (several while keys rotate).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "gatehouse/crypto/gateway_identity.h"

namespace gatehouse::modern {

/// Lower-case hex of `bytes`.
std::string to_hex(std::span<const std::byte> bytes);

/// Reads a private key file; throws std::runtime_error naming the file and
/// what is wrong with it (unreadable, group/world-readable, another owner,
/// not exactly one key).
KeyPair read_private_key_file(const std::string& path);
/// Reads a public key file: at least one key. Throws std::runtime_error
/// naming the file and line.
std::vector<PublicKey> read_public_key_file(const std::string& path);
/// Writes `pair` to `path` (mode 0600, refusing to overwrite anything) and
/// its public key to `path`.pub (0644). Throws std::runtime_error.
void write_key_files(const std::string& path, const KeyPair& pair);

/// The static keys a gateway holds, found by the key id a client names.
class GatewayKeyring {
 public:
  GatewayKeyring() = default;
  /// Each path is a private key file (read_private_key_file()); two files
  /// of the same key are an error.
  static GatewayKeyring load(std::span<const std::string> paths);
  ~GatewayKeyring();
  GatewayKeyring(GatewayKeyring&& other) noexcept = default;
  GatewayKeyring& operator=(GatewayKeyring&& other) noexcept = default;
  GatewayKeyring(const GatewayKeyring&) = delete;
  GatewayKeyring& operator=(const GatewayKeyring&) = delete;

  void add(const KeyPair& pair);
  /// The key whose id is `id`, or nullptr.
  const KeyPair* find(std::span<const std::byte, kKeyIdBytes> id) const noexcept;
  std::size_t size() const noexcept { return keys_.size(); }
  bool empty() const noexcept { return keys_.empty(); }

 private:
  struct Entry {
    KeyId id;
    KeyPair pair;
  };
  std::vector<Entry> keys_;
};

}  // namespace gatehouse::modern
