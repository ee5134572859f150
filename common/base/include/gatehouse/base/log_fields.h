// The key=value words of a log line, which the journal gets as fields of
// their own (GATEHOUSE_USER=1001 for "user=1001"), so that `journalctl
// GATEHOUSE_USER=1001` finds one player's lines among a million.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse {

/// Each word of `line` of the form key=value, in order: the key lowercase
/// letters, digits and '_' (starting with a letter, at most 32 bytes), the
/// value up to the next space (not empty). Text between quotes is never
/// read: every string a client chose is logged quoted with its own quotes
/// escaped (log_text()), so an open_udid of "x user=1" cannot forge a field.
std::vector<std::pair<std::string_view, std::string_view>> log_fields(std::string_view line);

}  // namespace gatehouse
