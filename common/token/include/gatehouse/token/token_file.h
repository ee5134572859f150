// The `login = tokens:FILE` table, hashed (docs/login.md): lines
// `blake2b256:<hex BLAKE2b-256 of the token> <user id>`, so that the file (a backup, a
// config repository) does not give away the tokens. The hash is unkeyed,
// which is sound for what such a file must hold: random tokens of 128 bits
// or more, out of reach of guessing (`printf %s TOKEN | b2sum -l 256` gives
// the same hex). A line that is not such a hash is refused: the file is
// converted once with `gatehouse token-hash`.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gatehouse::token {

/// "blake2b256:" and 64 lower-case hex digits: BLAKE2b-256 of the token's bytes.
std::string hash_token(std::string_view token);

/// hash -> user id. Blank lines and lines starting with '#' are skipped.
/// Throws std::runtime_error naming the file and line on a bad entry, a
/// plaintext token among them.
std::unordered_map<std::string, std::int32_t> read_token_file(const std::string& path);

/// Rewrites a table of `<token> <user id>` lines as hashed lines (comments
/// and blank lines kept, lines already hashed kept). Throws
/// std::runtime_error naming the line on a bad entry.
void hash_token_file(std::istream& in, std::ostream& out);

}  // namespace gatehouse::token
