// Journal: how a worker's batch of work survives the worker being killed at
// any instruction (docs/crash-consistency.md).
//
// A batch reads input records (uncommitted), changes sessions in place and
// writes output records (unpublished). It becomes durable at one store: the
// journal's state going to kCommitting, after the positions to publish and
// commit are recorded. Before that store, the first change to each session
// in the batch is preceded by a copy of the session as it was (the undo
// image); after it, the recorded positions are stored to the rings.
//
// A replacement worker reads the journal before touching its rings:
//   kCommitting -> roll forward: store the recorded ring positions (the
//                  outputs are in the rings already), forget the images;
//   otherwise   -> roll back: put every undo image back; the outputs were
//                  never published and the inputs never committed, so the
//                  batch runs again from the same state, byte for byte
//                  (sequence numbers, RC4 positions and all).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "gatehouse/contract/control.h"
#include "gatehouse/contract/session.h"

namespace gatehouse {

/// Most sessions one batch may change: the input batch limits keep a batch
/// well under this (each input record touches at most one session).
inline constexpr std::uint32_t kJournalEntries = 1024;

struct JournalEntry {
  std::uint64_t conn;
  Session before;
};

struct Journal {
  enum State : std::uint32_t { kIdle = 0, kCommitting = 1 };

  std::atomic<std::uint32_t> state;
  std::atomic<std::uint32_t> count;  ///< undo images written this batch
  std::uint64_t batch;               ///< number of the current batch
  std::uint32_t incarnations;        ///< workers that have run on this journal
  std::uint32_t reserved;
  // Commit targets, valid while state == kCommitting.
  std::uint64_t frontend_in_head[kMaxFrontends];   ///< of ring fe-w, by frontend
  std::uint64_t bridge_in_head[kMaxBridges];       ///< of ring br-w, by bridge
  std::uint64_t frontend_out_tail[kMaxFrontends];  ///< of ring w-fe, by frontend
  std::uint64_t bridge_out_tail[kMaxBridges];      ///< of ring w-br, by bridge
  JournalEntry entries[kJournalEntries];
};

}  // namespace gatehouse
