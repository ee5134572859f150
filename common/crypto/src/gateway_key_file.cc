#include "gatehouse/crypto/gateway_key_file.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace gatehouse::modern {
namespace {

using KeyFileError = std::runtime_error;

/// The first line of a private key file, so that a client given one by
/// mistake refuses it instead of pinning a secret as if it were public.
constexpr std::string_view kPrivateHeader = "# gatehouse gateway private key";

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

/// 64 hex digits -> 32 bytes; nullopt for anything else.
std::optional<std::array<std::byte, 32>> parse_hex_key(const std::string& line) {
  std::array<std::byte, 32> key;
  std::size_t bytes = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(key.data()), key.size(), line.c_str(),
                     line.size(), nullptr, &bytes, &end) != 0 ||
      bytes != key.size() || end != line.c_str() + line.size()) {
    return std::nullopt;
  }
  return key;
}

/// The keys of a key file, one a line; throws naming the file and line.
std::vector<std::array<std::byte, 32>> read_keys(const std::string& path, std::istream& in) {
  std::vector<std::array<std::byte, 32>> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line.erase(std::remove_if(line.begin(), line.end(),
                              [](char c) { return c == ' ' || c == '\t' || c == '\r'; }),
               line.end());
    if (line.empty() || line[0] == '#') continue;
    const auto key = parse_hex_key(line);
    if (!key) {
      throw KeyFileError(path + ":" + std::to_string(number) +
                         ": expected a key of 64 hex digits (or a '#' comment)");
    }
    keys.push_back(*key);
  }
  return keys;
}

void write_file(const std::string& path, mode_t mode, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw KeyFileError("cannot create " + path + ": " + std::strerror(errno));
  const bool ok = ::fchmod(fd, mode) == 0 &&
                  ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok) throw KeyFileError("cannot write " + path + ": " + std::strerror(error));
}

}  // namespace

std::string to_hex(std::span<const std::byte> bytes) {
  std::string hex(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                 bytes.size());
  hex.pop_back();
  return hex;
}

KeyPair read_private_key_file(const std::string& path) {
  // A symlink is followed (secret mounts are links): the checks are the target's.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw KeyFileError("gateway key " + path + " is not readable: " + std::strerror(errno));
  }
  struct stat st {};
  const bool stated = ::fstat(fd, &st) == 0;
  std::string text;
  if (stated && S_ISREG(st.st_mode)) {
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0 && text.size() < 65536) {
      text.append(buffer, static_cast<std::size_t>(n));
    }
    sodium_memzero(buffer, sizeof buffer);
  }
  ::close(fd);
  if (!stated || !S_ISREG(st.st_mode))
    throw KeyFileError("gateway key " + path + " is not a regular file");
  if (st.st_uid != ::geteuid()) {
    throw KeyFileError("gateway key " + path + " belongs to uid " + std::to_string(st.st_uid) +
                       ", not to the gateway's uid " + std::to_string(::geteuid()));
  }
  if ((st.st_mode & 077) != 0) {
    throw KeyFileError("gateway key " + path +
                       " is readable or writable by group or others (mode " +
                       mode_text(st.st_mode) + "): chmod 600 " + path);
  }
  std::istringstream in(text);
  sodium_memzero(text.data(), text.size());
  auto keys = read_keys(path, in);
  if (keys.size() != 1) {
    throw KeyFileError("gateway key " + path + " holds " + std::to_string(keys.size()) +
                       " keys; a private key file holds exactly one (gatehouse keygen)");
  }
  KeyPair pair;
  std::memcpy(pair.secret_key.data(), keys[0].data(), kKeyBytes);
  sodium_memzero(keys.data(), keys.size() * sizeof keys[0]);
  pair.public_key = public_key_of(pair.secret_key);
  return pair;
}

std::vector<PublicKey> read_public_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw KeyFileError("cannot read gateway public key file " + path);
  if (std::string first; std::getline(in, first) && first.starts_with(kPrivateHeader)) {
    throw KeyFileError(path + " is the gateway's private key file; pin its public key (" + path +
                       ".pub)");
  }
  in.clear();
  in.seekg(0);
  const auto keys = read_keys(path, in);
  if (keys.empty()) throw KeyFileError("gateway public key file " + path + " holds no key");
  return {keys.begin(), keys.end()};
}

void write_key_files(const std::string& path, const KeyPair& pair) {
  const std::string public_hex = to_hex(pair.public_key);
  const std::string id_hex = to_hex(key_id_of(pair.public_key));
  std::string secret_text = std::string(kPrivateHeader) +
                            " (X25519; docs/protocol-modern.md). Readable by the\n"
                            "# gateway's user only. Public key " +
                            public_hex + ", key id " + id_hex + ".\n" + to_hex(pair.secret_key) +
                            "\n";
  write_file(path, 0600, secret_text);
  sodium_memzero(secret_text.data(), secret_text.size());
  write_file(path + ".pub", 0644,
             "# gatehouse gateway public key (X25519), key id " + id_hex +
                 ". Clients pin it: gatehouse-client --gateway-key FILE.\n" + public_hex + "\n");
}

GatewayKeyring GatewayKeyring::load(std::span<const std::string> paths) {
  GatewayKeyring ring;
  for (const std::string& path : paths) {
    KeyPair pair = read_private_key_file(path);
    if (ring.find(key_id_of(pair.public_key)) != nullptr) {
      throw KeyFileError("gateway key " + path + " is a key already loaded from another file");
    }
    ring.add(pair);
    sodium_memzero(pair.secret_key.data(), pair.secret_key.size());
  }
  return ring;
}

GatewayKeyring::~GatewayKeyring() {
  for (Entry& e : keys_) sodium_memzero(e.pair.secret_key.data(), e.pair.secret_key.size());
}

void GatewayKeyring::add(const KeyPair& pair) {
  keys_.push_back({key_id_of(pair.public_key), pair});
}

const KeyPair* GatewayKeyring::find(std::span<const std::byte, kKeyIdBytes> id) const noexcept {
  for (const Entry& e : keys_) {
    if (std::memcmp(e.id.data(), id.data(), kKeyIdBytes) == 0) return &e.pair;
  }
  return nullptr;
}

}  // namespace gatehouse::modern
