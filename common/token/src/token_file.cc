#include "gatehouse/token/token_file.h"

#include <sodium.h>

#include <fstream>
#include <istream>
#include <ostream>
#include <sstream>
#include <stdexcept>

#include "gatehouse/token/signed_token.h"

namespace gatehouse::token {
namespace {

constexpr std::string_view kPrefix = "blake2b256:";

bool is_hash(std::string_view field) {
  if (field.size() != kPrefix.size() + 64 || field.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  return field.substr(kPrefix.size()).find_first_not_of("0123456789abcdef") ==
         std::string_view::npos;
}

/// One `<first> <user id>` line; false for a blank or comment line. Throws
/// `where`: "expected ..." on a bad one.
bool parse_line(const std::string& line, const std::string& where, std::string& first,
                std::int32_t& uid) {
  std::istringstream fields(line);
  long long id = 0;
  std::string extra;
  if (!(fields >> first) || first[0] == '#') return false;
  if (!(fields >> id) || id <= 0 || id > 0x7FFF'FFFF || (fields >> extra)) {
    throw std::runtime_error(where + ": expected '<token or hash> <user id 1..2147483647>'");
  }
  uid = static_cast<std::int32_t>(id);
  return true;
}

}  // namespace

std::string hash_token(std::string_view token) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  unsigned char digest[32];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  return std::string(kPrefix) + hex(digest, sizeof digest);
}

std::unordered_map<std::string, std::int32_t> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read login token file " + path);
  std::unordered_map<std::string, std::int32_t> table;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = path + ":" + std::to_string(number);
    std::string first;
    std::int32_t uid = 0;
    if (!parse_line(line, where, first, uid)) continue;
    if (!is_hash(first)) {
      std::string message = where;
      message +=
          ": not a token hash (plaintext tokens are refused: convert the file with "
          "`gatehouse token-hash ";
      message += path;
      message += "`)";
      throw std::runtime_error(message);
    }
    table[first] = uid;
  }
  return table;
}

void hash_token_file(std::istream& in, std::ostream& out) {
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string first;
    std::int32_t uid = 0;
    if (!parse_line(line, "line " + std::to_string(number), first, uid)) {
      out << line << "\n";
    } else {
      out << (is_hash(first) ? first : hash_token(first)) << " " << uid << "\n";
    }
  }
}

}  // namespace gatehouse::token
