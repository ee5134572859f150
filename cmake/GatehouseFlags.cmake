# Compiler flags that belong to targets, not to the whole tree.
#
#   gatehouse_warnings   - interface target: our warning set (+ -Werror when
#                          GATEHOUSE_WERROR). Linked PRIVATE by every
#                          first-party target; generated code does not get it.
#   GATEHOUSE_SANITIZE   - applies to everything built in this tree, because
#                          sanitizer runtimes must see every object.

add_library(gatehouse_warnings INTERFACE)
add_library(gw::warnings ALIAS gatehouse_warnings)
target_compile_options(gatehouse_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Wformat=2 -Wimplicit-fallthrough
  -Wconversion -Wmisleading-indentation
  $<$<BOOL:${GATEHOUSE_WERROR}>:-Werror>)

# Sanitizer instrumentation makes GCC's -Wmaybe-uninitialized report false
# positives in the standard library (std::regex, std::function); the plain
# build keeps the warning.
if(NOT GATEHOUSE_SANITIZE STREQUAL "" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  add_compile_options(-Wno-maybe-uninitialized)
endif()

if(GATEHOUSE_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(GATEHOUSE_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  # GCC warns that TSan does not model std::atomic_thread_fence. Ours (the
  # routing table's sequence lock, contract/.../metrics.h) order only
  # atomic accesses, which TSan checks as atomics: no race can hide there.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-tsan)
  endif()
  add_link_options(-fsanitize=thread)
elseif(NOT GATEHOUSE_SANITIZE STREQUAL "")
  message(FATAL_ERROR "GATEHOUSE_SANITIZE must be '', 'address' or 'thread', not '${GATEHOUSE_SANITIZE}'")
endif()

if(GATEHOUSE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "GATEHOUSE_FUZZ needs clang (configure with CXX=clang++-14)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
