# The Debian package: `cpack -G DEB` in a build directory (after the build)
# makes gatehouse_<version>_<arch>.deb from the install rules
# (cmake/GatehouseInstall.cmake), with the runtime libraries' packages as
# Depends (dpkg-shlibdeps) and the maintainer scripts of packaging/deb,
# configured with the install paths. tests/packaging checks what it holds,
# and installs and purges it.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gatehouse)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Gatehouse maintainers <gatehouse@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "game gateway: client connections to gRPC game services")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "Gatehouse terminates game clients' TCP and KCP connections, frames their packets, runs\n"
       "the key exchange and stream encryption, rejects replays and floods, and carries every\n"
       "logged-in player to a game service over a gRPC stream. It speaks the gonet2 agent's\n"
       "protocol, so gonet2 clients and game services work with it unchanged.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Debug information stays in the build tree; the package is what runs.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The service user: systemd-sysusers where systemd is, else useradd (passwd).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(package_scripts)
foreach(script IN ITEMS postinst prerm postrm)
  configure_file(${PROJECT_SOURCE_DIR}/packaging/deb/${script}.in
                 ${PROJECT_BINARY_DIR}/packaging/deb/${script} @ONLY
                 FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                  WORLD_READ WORLD_EXECUTE)
  list(APPEND package_scripts ${PROJECT_BINARY_DIR}/packaging/deb/${script})
endforeach()
# /etc/gatehouse/main.conf is the operator's once installed: an upgrade asks
# before replacing a changed one.
file(WRITE ${PROJECT_BINARY_DIR}/packaging/deb/conffiles "${GATEHOUSE_INSTALL_CONF_DIR}/main.conf\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${package_scripts}
    ${PROJECT_BINARY_DIR}/packaging/deb/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
