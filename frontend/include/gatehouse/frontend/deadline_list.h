// DeadlineList: an intrusive list of items that share one timeout, oldest
// deadline first. Every item of a list gets the same timeout from "now", so
// appending keeps the order and the frontend's sweep looks only at the head:
// O(1) to arm, re-arm and cancel a deadline, O(expired) to sweep, and no
// allocation. An item takes part in several lists (read, write and login
// deadlines) through one DeadlineLink member per list; lists that an item is
// never in at the same time may share a link (read and linger).
#pragma once

#include <cstdint>

namespace gatehouse::frontend {

template <class T>
struct DeadlineLink {
  T* prev = nullptr;
  T* next = nullptr;
  std::int64_t deadline_ms = 0;
  const void* list = nullptr;  // the list it is in, if any
};

template <class T>
class DeadlineList {
 public:
  /// `link`: the member of T this list threads through. A pointer to member
  /// (not a template argument) so that a list of an incomplete T can be
  /// declared.
  explicit DeadlineList(DeadlineLink<T> T::*link) : link_(link) {}
  DeadlineList(const DeadlineList&) = delete;
  DeadlineList& operator=(const DeadlineList&) = delete;

  bool contains(const T& item) const { return (item.*link_).list == this; }

  /// Appends `item` (which must not be in another list through the same link).
  void push_back(T& item, std::int64_t deadline_ms) {
    DeadlineLink<T>& l = item.*link_;
    l.list = this;
    l.deadline_ms = deadline_ms;
    l.prev = tail_;
    l.next = nullptr;
    (tail_ != nullptr ? (tail_->*link_).next : head_) = &item;
    tail_ = &item;
  }

  /// Removes `item` if it is in this list.
  void remove(T& item) {
    DeadlineLink<T>& l = item.*link_;
    if (l.list != this) return;
    (l.prev != nullptr ? (l.prev->*link_).next : head_) = l.next;
    (l.next != nullptr ? (l.next->*link_).prev : tail_) = l.prev;
    l = DeadlineLink<T>{};
  }

  /// Moves `item` to the back with a new deadline.
  void restart(T& item, std::int64_t deadline_ms) {
    remove(item);
    push_back(item, deadline_ms);
  }

  /// The item with the earliest deadline if that deadline is <= now, taken
  /// out of the list; nullptr when none has expired.
  T* pop_expired(std::int64_t now) {
    T* const item = head_;
    if (item == nullptr || (item->*link_).deadline_ms > now) return nullptr;
    remove(*item);
    return item;
  }

 private:
  DeadlineLink<T> T::*link_;
  T* head_ = nullptr;
  T* tail_ = nullptr;
};

}  // namespace gatehouse::frontend
