# The CLI's helpers below the binary (cli/util.c), with the failing allocator.
uf_test(NAME test_cli_util SOURCES test_cli_util.c ../cli/util.c LIBS uf_config PkgConfig::JANSSON FAILALLOC)
