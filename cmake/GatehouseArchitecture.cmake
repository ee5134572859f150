# The architecture's link rules, refused at configure time (the include rules
# and the segment rule are tools/check-architecture.sh, run as a test):
#   - no process library or executable links another process's library;
#   - shm, the codec and kcp link nothing of ours.
# See docs/architecture.md, "Rooms and arrows".
function(gatehouse_check_links target)
  cmake_parse_arguments(A "" "" "FORBIDDEN" ${ARGN})
  get_target_property(direct ${target} LINK_LIBRARIES)
  get_target_property(interface ${target} INTERFACE_LINK_LIBRARIES)
  foreach(lib IN LISTS direct interface)
    # PRIVATE dependencies of a static library show up as $<LINK_ONLY:...>.
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" lib "${lib}")
    if(lib IN_LIST A_FORBIDDEN)
      message(FATAL_ERROR "architecture: ${target} links ${lib}, which its room may not "
                          "(docs/architecture.md, Rooms and arrows)")
    endif()
  endforeach()
endfunction()

set(_gatehouse_processes gw::frontend gw::worker gw::bridge gw::supervisor)
set(_gatehouse_ours gw::shm gw::codec gw::crypto gw::net gw::base gw::token gw::kcp gw::contract
    gw::proto
    ${_gatehouse_processes})
foreach(pair IN ITEMS gw_frontend:gw::frontend gw_worker:gw::worker gw_bridge:gw::bridge
                      gw_supervisor:gw::supervisor)
  string(REPLACE ":" ";" pair "${pair}")
  list(GET pair 0 target)
  list(GET pair 1 self)
  set(others ${_gatehouse_processes})
  list(REMOVE_ITEM others ${self})
  gatehouse_check_links(${target} FORBIDDEN ${others})
endforeach()
gatehouse_check_links(gw_shm FORBIDDEN ${_gatehouse_ours})
gatehouse_check_links(gw_codec FORBIDDEN ${_gatehouse_ours})
gatehouse_check_links(gw_kcp FORBIDDEN ${_gatehouse_ours})
