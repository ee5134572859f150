# Run at every build (cmake -P): writes OUT, the definitions of
# gatehouse::version() and gatehouse::revision(), from the project version
# and `git describe` of SOURCE_DIR, rewriting it only when the text changes
# so that nothing rebuilds or relinks while the revision stays the same.
#   -DSOURCE_DIR=... -DOUT=... -DVERSION=...
set(revision "unknown")
find_program(GIT git)
if(GIT AND EXISTS "${SOURCE_DIR}/.git")
  execute_process(COMMAND ${GIT} -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                  OUTPUT_VARIABLE described OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE failed ERROR_QUIET)
  if(NOT failed AND described)
    set(revision "${described}")
  endif()
endif()
set(text "// Written by cmake/GatehouseWriteVersion.cmake at build time.
#include \"gatehouse/base/version.h\"

namespace gatehouse {
std::string_view version() noexcept { return \"${VERSION}\"; }
std::string_view revision() noexcept { return \"${revision}\"; }
}  // namespace gatehouse
")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
