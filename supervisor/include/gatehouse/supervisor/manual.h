// The manual pages, written from the settings table like --help and the
// example configuration, so that the three never disagree: gatehouse(8)
// (commands, options, signals, files) and gatehouse.conf(5) (the file's
// syntax and every setting). `gatehouse --print-manual 8|5` prints them;
// the build writes and installs them (supervisor/CMakeLists.txt).
#pragma once

#include <string>

namespace gatehouse::supervisor {

/// The roff source of gatehouse(8) (`section` 8) or gatehouse.conf(5) (5);
/// empty for another section.
std::string manual_page(int section);

}  // namespace gatehouse::supervisor
