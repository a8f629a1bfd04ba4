/* Helpers shared by the libFuzzer targets of fuzz/: a private scratch folder per process, files
 * written from the input, NUL-terminated copies, and the property check that turns a broken
 * invariant into a crash libFuzzer reports (and keeps the input of). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/macro.h"

/* libFuzzer's entry points (declared here: the targets define them). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The process's scratch folder (created on first use under $TMPDIR, else /tmp; removed at
 * exit). Aborts when it cannot be made: a fuzzer without it would test nothing. */
const char *fuzz_tmpdir(void);
/* fuzz_tmpdir()/name, malloc'd (aborts on OOM). */
char *fuzz_path(const char *name);
/* Replace the file at path with size bytes of data. Aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t size);
/* A malloc'd NUL-terminated copy of data (so ASan sees any read past the end). */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* Report a broken property of the code under test and abort (libFuzzer keeps the input). */
_noreturn_ void fuzz_fail(const char *fmt, ...) _printf_(1, 2);
#define FUZZ_CHECK(cond, fmt, ...)                                                                                     \
	do {                                                                                                           \
		if (!(cond))                                                                                           \
			fuzz_fail("check failed: %s: " fmt, #cond, ##__VA_ARGS__);                                     \
	} while (0)
