// What was built: the project version (CMake's project(VERSION)) and the
// source revision (`git describe --dirty`, "unknown" outside a git tree),
// for --version, the build_info metric and the manual pages. Defined in a
// file the build writes (cmake/GatehouseWriteVersion.cmake) into the small
// gw::version library, so that a new commit relinks only what names them.
#pragma once

#include <string_view>

namespace gatehouse {

std::string_view version() noexcept;
std::string_view revision() noexcept;

}  // namespace gatehouse
