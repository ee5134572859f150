// The checks every value read from the segment passes before a process acts
// on it (issue 20: no process trusts another's memory blindly). Each one that
// fails is a violation (shm/violation.h): one line naming the region, the
// field and the value, then the reading process exits and the supervisor
// replaces it. They live here, next to the structs they check, and are
// called where the values enter a process: GatewaySegment's accessors
// (settings, journal), the worker's one way to a Session (check_session),
// and the record decoding of every ring (record_reader.h).
#pragma once

#include <cstdint>
#include <optional>

#include "gatehouse/contract/control.h"
#include "gatehouse/contract/journal.h"
#include "gatehouse/contract/session.h"

namespace gatehouse {

/// Wall-clock times in the segment (ms since the epoch) are at most this: so
/// far ahead (year 2116) that none is legitimate, and small enough that the
/// times in ns derived from them (x 1e6, plus a rate bucket's few minutes)
/// never overflow an int64.
inline constexpr std::int64_t kMaxUnixMs = (std::int64_t{1} << 62) / 1'000'000;
/// The same bound in ns, for the rate buckets' theoretical arrival times.
inline constexpr std::int64_t kMaxUnixNs = std::int64_t{1} << 62;

/// Settings as a reader relies on them: counts within their arrays, strings
/// terminated inside theirs, enums within their values, at least one worker
/// and as many slots as workers. `where` names the copy for the message.
void check_settings(const Settings& settings, const char* where);

/// A worker's journal as its successor reads it: a known state and at most
/// kJournalEntries images.
void check_journal(const Journal& journal, std::uint32_t worker);

/// A session slot's fields as a worker uses them: known state and crypto, a
/// listener of the settings, times that cannot overflow. A few compares: for
/// every time a worker takes the session.
void check_session(const Session& session, std::uint64_t conn, const Settings& settings);

/// Its cipher states as the crypto libraries use them: a known AEAD, RC4
/// tables of bytes (OpenSSL's x86-64 RC4 indexes its table with the table's
/// own words, unmasked). Reads 2 KiB for a legacy session (~70 ns), so a
/// worker checks it once per tenant, when it first takes it: from then on it
/// is the state's only writer.
void check_session_cipher(const Session& session, std::uint64_t conn);

/// The worker that owns connection `conn`'s slot, or nullopt when the slot
/// is outside the session table (worker_of_slot's range split).
std::optional<std::uint32_t> worker_of(std::uint64_t conn, const Settings& settings) noexcept;

}  // namespace gatehouse
