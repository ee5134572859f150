#include "gatehouse/bridge/etcd_v2_json.h"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <limits>
#include <utility>

namespace gatehouse::bridge::etcd_v2 {

namespace json = boost::json;

namespace {

/// Deep trees are legal in the v2 store (and only the top two levels under
/// the root matter): far more than Boost.JSON's default of 32.
constexpr std::size_t kMaxDepth = 1024;

/// A non-negative integer field; false when present and not one.
bool index_of(const json::object& o, std::string_view name, std::int64_t* out) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) return true;
  if (const std::int64_t* i = v->if_int64(); i != nullptr && *i >= 0) {
    *out = *i;
    return true;
  }
  if (const std::uint64_t* u = v->if_uint64();
      u != nullptr && *u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    *out = static_cast<std::int64_t>(*u);
    return true;
  }
  return false;
}

/// A string field; false when present and not one.
bool text_of(const json::object& o, std::string_view name, std::string* out) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) return true;
  const json::string* s = v->if_string();
  if (s == nullptr) return false;
  out->assign(s->data(), s->size());
  return true;
}

/// One node's own fields (not its children).
std::string node_of(const json::value& v, Node* out) {
  const json::object* o = v.if_object();
  if (o == nullptr) return "a node is not an object";
  const json::value* key = o->if_contains("key");
  if (key == nullptr || !key->is_string()) return "a node has no key";
  out->key.assign(key->get_string().data(), key->get_string().size());
  if (const json::value* dir = o->if_contains("dir"); dir != nullptr) {
    if (!dir->is_bool()) return "node " + out->key + ": dir is not a boolean";
    out->dir = dir->get_bool();
  }
  if (const json::value* value = o->if_contains("value"); value != nullptr) {
    if (!value->is_string()) return "node " + out->key + ": value is not a string";
    out->value.emplace(value->get_string().data(), value->get_string().size());
  }
  if (!index_of(*o, "modifiedIndex", &out->modified_index)) {
    return "node " + out->key + ": modifiedIndex is not an index";
  }
  return {};
}

/// Every node under `root` that is not a directory, depth first (an
/// explicit stack: the depth is the input's).
std::string flatten(const json::value& root, std::vector<Node>* keys) {
  std::vector<const json::value*> todo{&root};
  while (!todo.empty()) {
    const json::value* v = todo.back();
    todo.pop_back();
    Node node;
    if (std::string error = node_of(*v, &node); !error.empty()) return error;
    const json::value* nodes = v->get_object().if_contains("nodes");
    if (!node.dir) {
      if (nodes != nullptr) return "key " + node.key + " has nodes";
      keys->push_back(std::move(node));
      continue;
    }
    if (nodes == nullptr) continue;  // an empty directory
    const json::array* list = nodes->if_array();
    if (list == nullptr) return "directory " + node.key + ": nodes is not a list";
    for (auto it = list->rbegin(); it != list->rend(); ++it) todo.push_back(&*it);
  }
  return {};
}

}  // namespace

std::optional<bool> action_puts(std::string_view action) {
  if (action == "set" || action == "create" || action == "update" || action == "compareAndSwap") {
    return true;
  }
  if (action == "delete" || action == "expire" || action == "compareAndDelete") return false;
  return std::nullopt;
}

std::string parse(std::string_view body, bool gather, Reply* out) {
  *out = Reply{};
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxDepth;
  const json::value doc = json::parse(body, ec, {}, options);
  if (ec) return "not JSON: " + ec.message();
  const json::object* o = doc.if_object();
  if (o == nullptr) return "not a JSON object";
  if (const json::value* code = o->if_contains("errorCode"); code != nullptr) {
    const std::int64_t* c = code->if_int64();
    if (c == nullptr || *c <= 0 || *c > 100'000) return "errorCode is not an error code";
    out->error_code = static_cast<int>(*c);
    if (!text_of(*o, "message", &out->message) || !text_of(*o, "cause", &out->cause) ||
        !index_of(*o, "index", &out->index)) {
      return "error " + std::to_string(*c) + ": a field of the wrong type";
    }
    return {};
  }
  if (!text_of(*o, "action", &out->action)) return "action is not a string";
  const json::value* node = o->if_contains("node");
  if (node == nullptr) return "no node";
  if (std::string error = node_of(*node, &out->node); !error.empty()) return error;
  if (gather) return flatten(*node, &out->keys);
  return {};
}

}  // namespace gatehouse::bridge::etcd_v2
