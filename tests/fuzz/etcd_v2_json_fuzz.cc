// Fuzz target: a reply body from etcd's v2 keys API (or whatever answers on
// etcd-hosts), read as the v2 wire reads a tree and a change
// (backend-bridge/.../etcd_v2_json.h). Nothing may crash, and the answers
// must agree with each other:
//   - a body that reads as a tree reads as a change too, with the same
//     node, error and action (the tree only gathers the keys under it);
//   - the keys gathered are not directories, and an error reply has an
//     error code and no keys.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gatehouse/bridge/etcd_v2_json.h"

namespace etcd_v2 = gatehouse::bridge::etcd_v2;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  etcd_v2::Reply tree;
  const std::string tree_error = etcd_v2::parse(body, true, &tree);
  etcd_v2::Reply change;
  const std::string change_error = etcd_v2::parse(body, false, &change);
  check(change.keys.empty());
  if (!tree_error.empty()) return 0;
  check(change_error.empty());
  check(tree.error_code == change.error_code && tree.action == change.action &&
        tree.node.key == change.node.key && tree.node.value == change.node.value &&
        tree.node.dir == change.node.dir && tree.node.modified_index == change.node.modified_index);
  if (tree.error_code != 0) {
    check(tree.keys.empty());
    return 0;
  }
  for (const etcd_v2::Node& key : tree.keys) check(!key.dir && key.modified_index >= 0);
  if (!tree.node.dir) check(tree.keys.size() == 1 && tree.keys[0].key == tree.node.key);
  (void)etcd_v2::action_puts(change.action);
  return 0;
}
