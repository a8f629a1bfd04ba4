# The fuzzers of fuzz/ (issue 11; scripts/fuzz), as ctest tests labelled "fuzz": fuzz_build
# builds them with clang and -fsanitize=fuzzer,address,undefined into <build dir>-fuzz (both
# cores, alone); then each fuzz_<target> replays fuzz/regress/<target>/ and fuzzes for
# UF_FUZZ_SECONDS (default 20) from fuzz/corpus/<target>/ into a scratch corpus, failing on
# any crash, hang, leak or UB. `scripts/test -L fuzz` runs only these, `-LE fuzz` skips them.
include(${CMAKE_SOURCE_DIR}/fuzz/targets.cmake)
set(UF_FUZZ_SECONDS 20 CACHE STRING "Seconds each fuzz_<target> test fuzzes")
set(UF_FUZZ_BUILD_DIR ${CMAKE_BINARY_DIR}-fuzz)
add_test(NAME fuzz_build COMMAND ${CMAKE_SOURCE_DIR}/scripts/fuzz build ${UF_FUZZ_BUILD_DIR})
set_tests_properties(fuzz_build PROPERTIES LABELS fuzz FIXTURES_SETUP fuzz_build TIMEOUT 1200 PROCESSORS 2)
foreach(t ${UF_FUZZ_TARGETS})
  add_test(NAME fuzz_${t} COMMAND ${CMAKE_SOURCE_DIR}/scripts/fuzz run ${t} ${UF_FUZZ_SECONDS} ${UF_FUZZ_BUILD_DIR})
  set_tests_properties(fuzz_${t} PROPERTIES LABELS fuzz FIXTURES_REQUIRED fuzz_build TIMEOUT 300)
endforeach()
