# FAT32 composer and content selection suites, and the compose benchmark's driver.
# They build against a private static library of the FAT sources (plus tests/fat_stubs.c for
# stage_fail and blksrc_free), so they do not depend on the rest of uf_stages or on uf_usb.
add_library(uf_fat_priv STATIC
  ${CMAKE_SOURCE_DIR}/stages/fatname.c ${CMAKE_SOURCE_DIR}/stages/fat32.c
  ${CMAKE_SOURCE_DIR}/stages/select.c ${CMAKE_SOURCE_DIR}/stages/stage_select.c
  ${CMAKE_CURRENT_SOURCE_DIR}/fat_stubs.c)
target_link_libraries(uf_fat_priv PUBLIC uf_util PkgConfig::CRYPTO)

uf_test(NAME test_fat32 SOURCES test_fat32.c fat_testlib.c LIBS uf_fat_priv PkgConfig::CRYPTO TIMEOUT 600 LABELS fat)
uf_test(NAME test_select SOURCES test_select.c fat_testlib.c LIBS uf_fat_priv PkgConfig::CRYPTO TIMEOUT 600 LABELS fat)

# bench/fat_compose_bench drives this (bench/ is not part of the top-level build).
add_executable(uf_fat_bench ${CMAKE_SOURCE_DIR}/bench/fat_bench.c)
target_link_libraries(uf_fat_bench PRIVATE uf_fat_priv uf_util PkgConfig::CRYPTO)
