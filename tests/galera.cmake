# The Galera suite (issue 15, tests/galera/run-galera): a 3-node MariaDB Galera cluster on
# loopback (tests/galera/cluster, under BUILD_DIR/galera, nodes run as the mysql user), three
# daemons each with database.hosts starting at a different node drain 300 jobs while node 1 is
# killed with -9 and rejoins; exact assertions from SQL (every job done once, every event once,
# claims spread, daemon 1 carried on through another node). About 60 s; bounded by
# GALERA_DEADLINE (240 s); the cluster is stopped by pid whatever happens. PROCESSORS 2: three
# nodes and three ASan daemons keep both cores busy.
add_test(NAME galera COMMAND ${CMAKE_SOURCE_DIR}/tests/galera/run-galera ${CMAKE_BINARY_DIR})
set_tests_properties(galera PROPERTIES TIMEOUT 300 LABELS galera PROCESSORS 2 ENVIRONMENT "TZ=UTC")
