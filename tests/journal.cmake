# journald fields (issue 13, part 5): usbforged and a probe run with stderr connected to a
# private systemd-journald (tests/journal/with-journald, as root), read back with journalctl.
add_executable(uf_journal_stream journal/jstream.c)
target_link_libraries(uf_journal_stream PRIVATE PkgConfig::SYSTEMD)
add_executable(uf_log_probe journal/logprobe.c)
target_link_libraries(uf_log_probe PRIVATE uf_util Threads::Threads)
uf_test(NAME test_journal SOURCES test_journal.c LIBS uf_db DB TIMEOUT 300 LABELS journal)
add_dependencies(test_journal uf_journal_stream uf_log_probe usbforged)
