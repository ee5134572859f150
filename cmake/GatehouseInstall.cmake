# Where an installed Gatehouse lives (`cmake --install build`, or the .deb
# that `cpack` makes from the same rules: cmake/GatehousePackage.cmake). The
# layout follows Debian's FHS practice with the prefix /usr (the default
# here, set in the top-level CMakeLists.txt):
#   /usr/sbin/gatehouse                      the supervisor, what operators run
#   /usr/sbin/gatehousectl                   commands to a running gateway (its admin socket)
#   /usr/libexec/gatehouse/gatehouse-*       its children (its default --bin-dir)
#   /usr/bin/gatehouse-{client,bench,demo-game}
#   /etc/gatehouse/main.conf                 the example configuration (a conffile)
#   /usr/lib/systemd/system/gatehouse@.service, /usr/lib/sysusers.d/gatehouse.conf
#   /usr/share/man/man8/gatehouse.8.gz, man5/gatehouse.conf.5.gz
#   /usr/share/doc/gatehouse/                README and docs/
#   /usr/share/gatehouse/monitoring/         dashboard and alert rules
set(GATEHOUSE_INSTALL_SBIN ${CMAKE_INSTALL_FULL_SBINDIR}/gatehouse)
set(GATEHOUSE_INSTALL_CTL ${CMAKE_INSTALL_FULL_SBINDIR}/gatehousectl)
set(GATEHOUSE_INSTALL_CONF_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/gatehouse)
set(GATEHOUSE_INSTALL_DOC_DIR ${CMAKE_INSTALL_FULL_DOCDIR})

install(TARGETS gatehouse gatehousectl RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS gatehouse-frontend gatehouse-worker gatehouse-bridge
        RUNTIME DESTINATION ${GATEHOUSE_LIBEXEC_RELATIVE})
install(TARGETS gatehouse-client gatehouse-bench gatehouse-conformance gatehouse-demo-game
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The unit names the installed paths.
configure_file(${PROJECT_SOURCE_DIR}/systemd/gatehouse@.service.in
               ${PROJECT_BINARY_DIR}/systemd/gatehouse@.service @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/systemd/gatehouse@.service DESTINATION lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/gatehouse.sysusers.conf
        DESTINATION lib/sysusers.d RENAME gatehouse.conf)
# Absolute: /etc even under the prefix /usr (DESTDIR and cpack still apply).
install(FILES ${PROJECT_SOURCE_DIR}/examples/gatehouse.conf
        DESTINATION ${GATEHOUSE_INSTALL_CONF_DIR} RENAME main.conf)

# The manual pages, written by the gatehouse just built from its settings
# table, compressed as Debian installs them.
# build/man is a MANPATH of its own (man/man8, man/man5): the unit test
# checks the unit's man: references against it.
set(GATEHOUSE_MAN_DIR ${PROJECT_BINARY_DIR}/man)
foreach(page IN ITEMS "8;gatehouse.8" "5;gatehouse.conf.5")
  list(GET page 0 section)
  list(GET page 1 name)
  set(dir ${GATEHOUSE_MAN_DIR}/man${section})
  add_custom_command(
    OUTPUT ${dir}/${name}.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${dir}
    COMMAND $<TARGET_FILE:gatehouse> --print-manual ${section} > ${dir}/${name}
    COMMAND gzip -9nf ${dir}/${name}
    DEPENDS gatehouse
    COMMENT "Manual page ${name}"
    VERBATIM)
  list(APPEND man_pages ${dir}/${name}.gz)
  install(FILES ${dir}/${name}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()
add_custom_target(gatehouse_manual ALL DEPENDS ${man_pages})

install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs
        FILES_MATCHING PATTERN "*.md")
install(FILES ${PROJECT_SOURCE_DIR}/examples/monitoring/gatehouse-dashboard.json
              ${PROJECT_SOURCE_DIR}/examples/monitoring/gatehouse-alerts.yml
              ${PROJECT_SOURCE_DIR}/examples/monitoring/README.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/gatehouse/monitoring)
