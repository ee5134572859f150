// Text a client chose, made fit for one log line: whatever reaches the logs
// from a socket (an open_udid, a token) goes through log_text(), so a client
// cannot forge lines, send terminal escapes or write kilobytes per event.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gatehouse {

/// How many bytes of escaped text a log line gives one client string.
inline constexpr std::size_t kLogTextMax = 128;

/// `text` escaped and capped for a log line. Printable ASCII and valid
/// UTF-8 stay as they are; backslash and both quotes become \\ \" \'; control
/// bytes (C0, DEL), C1 controls, line/paragraph separators and bidi overrides
/// become \n, \r, \t or \xHH per byte; so does every byte that is not part of
/// valid UTF-8. At most `max_bytes` bytes of that are kept (an escape or a
/// character is never cut), then "...(+K bytes)" says how many bytes of
/// `text` were left out.
std::string log_text(std::string_view text, std::size_t max_bytes = kLogTextMax);

}  // namespace gatehouse
