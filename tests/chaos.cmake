# The chaos suite (issue 10, tests/chaos/run-chaos): 3 daemons x 3 static slots drain 400 image
# jobs while a seeded schedule kill -9s and restarts daemons, freezes one past the stuck
# timeout, sends SIGHUP, and kill -9s MariaDB (briefly, and longer than the stuck timeout);
# exact assertions from SQL afterwards. It runs a MariaDB server of its own under
# BUILD_DIR/chaos/db (never the shared one of the fixture "db", which other suites use while it
# kills its server), stops it whatever happens, and bounds itself to CHAOS_DEADLINE (420 s).
# PROCESSORS 2: it keeps both cores busy (three ASan daemons, the server), so ctest -j2 runs
# nothing beside it, and its 3 s stuck timeout is not eaten by another suite's load.
# Replay a failure with the seed it prints: CHAOS_SEED=N tests/chaos/run-chaos BUILD_DIR;
# the long mode by hand: CHAOS_LONG=1 CHAOS_JOBS=3000 tests/chaos/run-chaos BUILD_DIR.
add_test(NAME chaos COMMAND ${CMAKE_SOURCE_DIR}/tests/chaos/run-chaos ${CMAKE_BINARY_DIR})
set_tests_properties(chaos PROPERTIES TIMEOUT 480 LABELS chaos PROCESSORS 2 ENVIRONMENT "TZ=UTC")
