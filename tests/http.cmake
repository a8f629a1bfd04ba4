# http/: the board of slot states (no server, no database).
uf_test(NAME test_board SOURCES test_board.c LIBS uf_http)
