# Config loader, size/duration parser, UTF-8 and job error code suites (no database).
uf_test(NAME test_config SOURCES test_config.c LIBS uf_config FAILALLOC)
uf_test(NAME test_size SOURCES test_size.c LIBS uf_config)
uf_test(NAME test_utf8 SOURCES test_utf8.c)
uf_test(NAME test_ufcode SOURCES test_ufcode.c)
uf_test(NAME test_openfile SOURCES test_openfile.c)
uf_test(NAME test_portpath SOURCES test_portpath.c)
uf_test(NAME test_message SOURCES test_message.c)
