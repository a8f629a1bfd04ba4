# FAT32 composer and content selection suites, and the compose benchmark's driver
# (bench/fat_compose_bench runs it; bench/ is not part of the top-level build).
uf_test(NAME test_fat32 SOURCES test_fat32.c fat_testlib.c LIBS uf_stages PkgConfig::CRYPTO TIMEOUT 600 LABELS fat)
uf_test(NAME test_select SOURCES test_select.c fat_testlib.c LIBS uf_stages PkgConfig::CRYPTO TIMEOUT 600 LABELS fat)

add_executable(uf_fat_bench ${CMAKE_SOURCE_DIR}/bench/fat_bench.c)
target_link_libraries(uf_fat_bench PRIVATE uf_stages uf_util PkgConfig::CRYPTO)
