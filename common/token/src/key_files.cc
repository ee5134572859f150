#include "gatehouse/token/key_files.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace gatehouse::token {
namespace {

/// The one hex line of a key file, decoded into `out`.
void read_hex(const std::string& path, mode_t forbidden, const char* too_open, unsigned char* out,
              std::size_t size) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("token key file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) throw std::runtime_error("token key file " + path + ": not a file");
  if ((st.st_mode & forbidden) != 0) {
    throw std::runtime_error("token key file " + path + " is " + too_open +
                             " (chmod go-rwx, or at least go-w for a public key)");
  }
  std::ifstream in(path);
  std::string line;
  std::string hex;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (!hex.empty()) throw std::runtime_error("token key file " + path + ": more than one key");
    hex = line;
  }
  std::size_t decoded = 0;
  const char* end = nullptr;
  if (hex.size() != size * 2 ||
      sodium_hex2bin(out, size, hex.data(), hex.size(), nullptr, &decoded, &end) != 0 ||
      decoded != size) {
    throw std::runtime_error("token key file " + path + ": expected one line of " +
                             std::to_string(size * 2) + " hex digits");
  }
}

void write_new(const std::string& path, mode_t mode, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  const bool written = ::fchmod(fd, mode) == 0 &&  // whatever the umask
                       ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!written) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

std::string id_text(const PublicKey& key) {
  char id[16];
  std::snprintf(id, sizeof id, "%08x", key.id());
  return id;
}

}  // namespace

PublicKey read_public_key(const std::string& path) {
  PublicKey key;
  read_hex(path, S_IWGRP | S_IWOTH, "writable by other users", key.bytes.data(), key.bytes.size());
  return key;
}

SecretKey read_secret_key(const std::string& path) {
  SecretKey key;
  read_hex(path, S_IRWXG | S_IRWXO, "open to other users", key.bytes.data(), key.bytes.size());
  return key;
}

std::vector<PublicKey> read_public_keys(std::string_view paths) {
  std::vector<PublicKey> keys;
  while (!paths.empty()) {
    const std::size_t comma = paths.find(',');
    keys.push_back(read_public_key(std::string(paths.substr(0, comma))));
    paths = comma == std::string_view::npos ? std::string_view() : paths.substr(comma + 1);
  }
  return keys;
}

void write_key_pair(const std::string& stem, const SecretKey& key) {
  const PublicKey pk = key.public_key();
  const std::string comment = "# gatehouse login token key (Ed25519), key id " + id_text(pk);
  write_new(stem + ".key", 0600,
            comment + ": SECRET, for minting tokens only\n" +
                hex(key.bytes.data(), key.bytes.size()) + "\n");
  write_new(stem + ".pub", 0644,
            comment + ": public, for `login = signed:FILE`\n" +
                hex(pk.bytes.data(), pk.bytes.size()) + "\n");
}

}  // namespace gatehouse::token
