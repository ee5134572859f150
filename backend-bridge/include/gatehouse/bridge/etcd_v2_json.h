// The replies of etcd's v2 keys API (docs/discovery.md), read from their
// JSON (Boost.JSON) into what the v2 wire (etcd_wire.h) needs. Untrusted
// bytes (a broken proxy, a hostile or buggy etcd): anything unexpected is a
// clear reason, never a crash (tests/fuzz/etcd_v2_json_fuzz.cc).
//
//   a read   GET /v2/keys/ROOT?recursive=true
//            {"action":"get","node":{"key":"/ROOT","dir":true,"nodes":[
//              {"key":"/ROOT/S","dir":true,"nodes":[{"key":"/ROOT/S/I",
//              "value":"HOST:PORT","modifiedIndex":7,"createdIndex":7}],...}]}}
//   an event GET /v2/keys/ROOT?wait=true&recursive=true&waitIndex=N
//            {"action":"set","node":{"key":"/ROOT/S/I","value":"...",
//              "modifiedIndex":9,...},"prevNode":{...}}
//   an error {"errorCode":401,"message":"The event in requested index is
//              outdated and cleared","cause":"...","index":2008}
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::bridge::etcd_v2 {

/// One node of the v2 store.
struct Node {
  std::string key;
  std::optional<std::string> value;  ///< a key's (none for a directory, or a deleted key)
  bool dir = false;
  std::int64_t modified_index = 0;
};

/// etcd's error codes that discovery tells apart.
inline constexpr int kKeyNotFound = 100;
inline constexpr int kEventIndexCleared = 401;

struct Reply {
  int error_code = 0;  ///< 0: not an error reply
  std::string message;
  std::string cause;
  std::int64_t index = 0;  ///< an error's: the store's index
  std::string action;      ///< get, set, create, update, compareAndSwap, delete, expire, ...
  Node node;
  /// With `gather`: every node under `node` (itself included) that is not
  /// a directory, depth first.
  std::vector<Node> keys;
};

/// What an action does to a key: true for a put (set, create, update,
/// compareAndSwap), false for a removal (delete, expire, compareAndDelete);
/// nullopt for another (get, or one unknown).
std::optional<bool> action_puts(std::string_view action);

/// Reads a reply body into `out`; `gather`: a recursive read's, whose keys
/// are gathered. Empty when it has the shape above, else what is wrong.
std::string parse(std::string_view body, bool gather, Reply* out);

}  // namespace gatehouse::bridge::etcd_v2
