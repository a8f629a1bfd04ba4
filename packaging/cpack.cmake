# The Debian package (issue 13): `cpack -G DEB` in a build configured by scripts/package
# (prefix /usr, RelWithDebInfo, UF_HARDEN) makes usbforge_<version>-<release>_amd64.deb and its
# detached debug symbols usbforge-dbgsym_<version>-<release>_amd64.ddeb. Installs, besides the two
# binaries (top CMakeLists.txt): the unit generated for the prefix, the udev rule, sysusers.d and
# tmpfiles.d, the sample config as the conffile /etc/usbforge/usbforge.conf, the man pages
# (gzipped), README.md, the copyright file and the Debian changelog. Included at the end of the
# top CMakeLists.txt.
include(GNUInstallDirs)

# Where the system looks for units, rules, users and directories. Debian 12 keeps units and
# udev rules under /lib (systemd.pc says so; lintian wants them there), sysusers.d and tmpfiles.d
# under /usr/lib.
pkg_get_variable(UF_PC_UNITDIR systemd systemdsystemunitdir)
pkg_get_variable(UF_PC_SYSUSERSDIR systemd sysusersdir)
pkg_get_variable(UF_PC_TMPFILESDIR systemd tmpfilesdir)
foreach(v UNITDIR:/lib/systemd/system SYSUSERSDIR:/usr/lib/sysusers.d TMPFILESDIR:/usr/lib/tmpfiles.d)
  string(REPLACE ":" ";" kv ${v})
  list(GET kv 0 k)
  list(GET kv 1 fallback)
  if(NOT UF_PC_${k})
    set(UF_PC_${k} ${fallback})
  endif()
endforeach()
set(UF_SYSTEMD_UNITDIR ${UF_PC_UNITDIR} CACHE PATH "Where usbforged.service is installed")
set(UF_SYSUSERSDIR ${UF_PC_SYSUSERSDIR} CACHE PATH "Where the sysusers.d file is installed")
set(UF_TMPFILESDIR ${UF_PC_TMPFILESDIR} CACHE PATH "Where the tmpfiles.d file is installed")
set(UF_UDEV_RULESDIR /lib/udev/rules.d CACHE PATH "Where the udev rule is installed")

# The unit names the installed binary and documentation.
set(UF_FULL_BINDIR ${CMAKE_INSTALL_FULL_BINDIR})
set(UF_FULL_DOCDIR ${CMAKE_INSTALL_FULL_DOCDIR})
configure_file(${CMAKE_SOURCE_DIR}/systemd/usbforged.service.in ${CMAKE_BINARY_DIR}/systemd/usbforged.service @ONLY)

# Man pages and the changelog, gzipped reproducibly (-n: no name, no time stamp).
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/packaging)
set(UF_GZ_OUT)
foreach(src man/usbforge.1 man/usbforged.8 man/usbforge.conf.5 debian/changelog)
  get_filename_component(name ${src} NAME)
  set(out ${CMAKE_BINARY_DIR}/packaging/${name}.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND sh -c "gzip -9nc \"$0\" > \"$1\"" ${CMAKE_SOURCE_DIR}/packaging/${src} ${out}
    DEPENDS ${CMAKE_SOURCE_DIR}/packaging/${src} VERBATIM)
  list(APPEND UF_GZ_OUT ${out})
endforeach()
add_custom_target(uf_package_docs ALL DEPENDS ${UF_GZ_OUT})

set(P ${CMAKE_BINARY_DIR}/packaging)
install(FILES ${CMAKE_BINARY_DIR}/systemd/usbforged.service DESTINATION ${UF_SYSTEMD_UNITDIR})
install(FILES ${CMAKE_SOURCE_DIR}/systemd/99-usbforge.rules DESTINATION ${UF_UDEV_RULESDIR})
install(FILES ${CMAKE_SOURCE_DIR}/systemd/usbforge.sysusers DESTINATION ${UF_SYSUSERSDIR} RENAME usbforge.conf)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/usbforge.tmpfiles DESTINATION ${UF_TMPFILESDIR} RENAME usbforge.conf)
# The conffile: /etc/usbforge whatever the prefix (the programs' default config path).
install(FILES ${CMAKE_SOURCE_DIR}/config/usbforge.conf.sample DESTINATION /etc/usbforge RENAME usbforge.conf)
install(FILES ${P}/usbforge.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${P}/usbforged.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${P}/usbforge.conf.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/packaging/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${P}/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME changelog.Debian.gz)

# CPack: one DEB, its Depends from dpkg-shlibdeps (plus what the maintainer scripts and the
# unit run), stripped binaries and a -dbgsym .ddeb with their debug information.
set(CPACK_PACKAGE_NAME usbforge)
set(CPACK_PACKAGE_VENDOR "usbforge maintainers")
set(CPACK_PACKAGE_CONTACT "usbforge maintainers <maintainers@users.noreply.b-seed-482211b9.example>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "USB-writing kiosk worker and its operator command line")
set(CPACK_PACKAGE_DESCRIPTION
    "usbforge writes ordered content onto USB sticks at a kiosk and proves every\n\
write by reading it back. Orders live in a MariaDB database; the usbforged\n\
daemon claims the jobs that fit the sticks plugged into its slots, writes\n\
images or a composed FAT32 file system with O_DIRECT, verifies them, and\n\
records each step for SQL inspection. The usbforge command adds and confirms\n\
orders, follows jobs and lists the sticks the daemon would use.\n\
.\n\
This package ships both programs, the sandboxed systemd unit, the udev rule\n\
giving the usbforge user the USB disks, and the sample configuration.")
# Not CPACK_STRIP_FILES: the debuginfo step needs the unstripped binaries; it moves their debug
# information into the .ddeb (by build id) and strips them (--strip-unneeded) itself.
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# systemd: systemd-sysusers and systemd-tmpfiles in postinst, and the unit; procps: /bin/kill
# of ExecReload=.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd, procps, ca-certificates") # ca-certificates: the events relay verifies https webhooks against them
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "udev")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "mariadb-server")
set(CPACK_DEBIAN_DEBUGINFO_PACKAGE ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/debian/conffiles ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
    ${CMAKE_SOURCE_DIR}/packaging/debian/prerm ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
