/* libFuzzer target: the writer's resume state (blkio/writer.c writer_resume_parse), the JSON
 * a retry reads back from processing_jobs.resume_state, for a writer with 2 MiB chunks on a
 * 256 MiB device. Properties: accepted or refused, never a crash, UB or leak; an accepted
 * state is one writer_state_json() could have written, as the resume check relies on: chunks
 * at increasing window starts at or above 1 MiB whose windows end within the high-water mark,
 * extents increasing and disjoint within [1 MiB, hwm], hwm within the device, and extents
 * whenever there are chunks. */
#include <errno.h>

#include "fuzz/fuzz_util.h"
#include "blkio/writer.h"

#define CS	 (UINT64_C(2) << 20)
#define DEV_SIZE (UINT64_C(256) << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ char *text = fuzz_strndup(data, size);
	struct writer_resume rs;

	int r = writer_resume_parse(text, CS, DEV_SIZE, &rs);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ERANGE || r == -ENOMEM, "writer_resume_parse returned %d", r);
		return 0;
	}
	FUZZ_CHECK(rs.hwm >= CHUNK_HEAD && rs.hwm <= DEV_SIZE, "hwm %llu", (unsigned long long)rs.hwm);
	FUZZ_CHECK(rs.n_chunks == 0 || rs.n_ext > 0, "%zu chunks but no extent", rs.n_chunks);
	for (size_t i = 0; i < rs.n_chunks; i++) {
		uint64_t off = rs.chunks[i].off;
		FUZZ_CHECK(off >= CHUNK_HEAD && chunk_window_start(off, CS) == off, "chunk %zu at %llu", i,
			   (unsigned long long)off);
		FUZZ_CHECK(i == 0 || off > rs.chunks[i - 1].off, "chunk %zu not after the one before", i);
		FUZZ_CHECK(chunk_window_end(off, CS) <= rs.hwm, "chunk %zu at %llu ends beyond hwm %llu", i,
			   (unsigned long long)off, (unsigned long long)rs.hwm);
	}
	for (size_t i = 0; i < rs.n_ext; i++) {
		uint64_t a = rs.ext[i].off, l = rs.ext[i].len;
		FUZZ_CHECK(l > 0 && a >= CHUNK_HEAD && a + l > a && a + l <= rs.hwm, "extent %zu [%llu, +%llu)", i,
			   (unsigned long long)a, (unsigned long long)l);
		FUZZ_CHECK(i == 0 || a >= rs.ext[i - 1].off + rs.ext[i - 1].len, "extent %zu overlaps", i);
	}
	writer_resume_done(&rs);
	return 0;
}
