# The clang half of CI (issue 10; scripts/lint), as ctest tests labelled "lint" so that
# `scripts/test -R x` still runs only x (and `-LE lint` skips them): clang_build builds
# everything with clang and -Werror into <build dir>-clang (build only: the suites run on this
# build); clang_tidy runs clang-tidy (.clang-tidy) over the product sources with that build's
# compile_commands.json. Each takes both cores (PROCESSORS 2) so ctest -j2 runs it alone.
set(UF_CLANG_BUILD_DIR ${CMAKE_BINARY_DIR}-clang)
add_test(NAME clang_build COMMAND ${CMAKE_SOURCE_DIR}/scripts/lint build ${UF_CLANG_BUILD_DIR})
set_tests_properties(clang_build PROPERTIES LABELS lint FIXTURES_SETUP clang_build TIMEOUT 1200 PROCESSORS 2)
add_test(NAME clang_tidy COMMAND ${CMAKE_SOURCE_DIR}/scripts/lint tidy ${UF_CLANG_BUILD_DIR})
set_tests_properties(clang_tidy PROPERTIES LABELS lint FIXTURES_REQUIRED clang_build TIMEOUT 1200 PROCESSORS 2)
# The architecture as folders: every include points down, and no two files call each other
# round a circle (scripts/layers).
add_test(NAME layers_check COMMAND ${CMAKE_SOURCE_DIR}/scripts/layers --calls ${CMAKE_BINARY_DIR})
set_tests_properties(layers_check PROPERTIES LABELS lint)
