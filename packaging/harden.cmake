# UF_HARDEN: the hardening flags of a Debian package build (what dpkg-buildflags gives with
# hardening=+all): _FORTIFY_SOURCE=2 (it needs optimization: RelWithDebInfo or Release, -O2),
# the strong stack protector, stack clash protection, PIE, and full RELRO with immediate binding.
# scripts/package turns it on; included from the top CMakeLists.txt before the targets exist.
option(UF_HARDEN "Build with the hardening flags of a Debian package (fortify, stack protector, relro/now, PIE)" OFF)
if(UF_HARDEN)
  if(NOT CMAKE_BUILD_TYPE MATCHES "^(RelWithDebInfo|Release)$")
    message(FATAL_ERROR "UF_HARDEN=ON needs an optimized build (-DCMAKE_BUILD_TYPE=RelWithDebInfo or Release): "
                        "_FORTIFY_SOURCE does nothing at -O0; CMAKE_BUILD_TYPE is '${CMAKE_BUILD_TYPE}'")
  endif()
  include(CheckPIESupported)
  check_pie_supported(LANGUAGES C)
  set(CMAKE_POSITION_INDEPENDENT_CODE ON)
  add_compile_definitions(_FORTIFY_SOURCE=2)
  add_compile_options(-O2 -fstack-protector-strong -fstack-clash-protection -Werror=format-security)
  add_link_options(LINKER:-z,relro LINKER:-z,now)
endif()
