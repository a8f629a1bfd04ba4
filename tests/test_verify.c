/* The verifier's full-device mode (blkio/verify.c, write.verify_full, `usbforge write
 * --full-verify`): the read-back covers the whole device, so a block that cannot be read
 * beyond the written image fails verification at its offset, while the default mode (the
 * written ranges only) does not read there at all; the written bytes are still compared. */
#include <errno.h>

#include "stages/stage_write.h"
#include "blkio/verify.h"
#include "blkio/writer.h"
#include "util/macro.h"
#include "wtest.h"

#define MiB (1u << 20)

struct run {
	enum uf_code code;
	uint64_t bad_offset;
	char *message;
};

/* Write an 8 MiB image onto a 32 MiB faulty target and verify it, full or not. */
static struct run write_and_verify(const struct dev_fault *f, bool full)
{
	char *dir = tu_tmpdir("vf");
	char *img = wt_image(dir, "a.img", 8 * MiB, 11, NULL);
	struct dev *inner = wt_target(dir, "t.bin", 32 * MiB, NULL), *d = NULL;
	cr_assert_eq(dev_new_faulty(inner, f, &d), 0);
	struct write_opts o = wt_opts();
	o.verify_full = full;
	struct job_spec job = { .image_path = img, .image_root = dir };
	struct stage_ctx ctx = { .job = &job, .dev = d, .opts = &o };
	cr_assert_eq(blksrc_open_image(img, &ctx.src, NULL), 0);
	cr_assert_eq(stage_writing(&ctx), UFC_NONE);
	struct run r = { .code = stage_verification(&ctx), .bad_offset = ctx.bad_offset };
	r.message = ctx.message ? strdup(ctx.message) : NULL;
	stage_ctx_done(&ctx);
	writer_dev_free(d);
	tu_rmrf(dir);
	free(img);
	free(dir);
	return r;
}

Test(verify_full, unreadable_block_past_the_image_fails_only_in_full_mode)
{
	struct dev_fault f = { .fail_read_at = 20 * MiB + 5 * 4096 + 777 };
	struct run r = write_and_verify(&f, false);
	cr_assert_eq(r.code, UFC_NONE, "the default mode reads the written 8 MiB only: %s", r.message ?: "");
	free(r.message);
	r = write_and_verify(&f, true);
	cr_assert_eq(r.code, UFC_VERIFY_MISMATCH);
	cr_assert_eq(r.bad_offset, 20 * MiB + 5 * 4096, "the failing block, not the read");
	cr_assert(r.message && strstr(r.message, "read error at offset 20992000"), "%s", r.message ?: "");
	free(r.message);
}

Test(verify_full, written_bytes_are_still_compared)
{
	struct dev_fault f = { .flip_read_at = 3 * MiB + 99 };
	struct run r = write_and_verify(&f, true);
	cr_assert_eq(r.code, UFC_VERIFY_MISMATCH);
	cr_assert_eq(r.bad_offset, 3 * MiB + 99, "the exact flipped byte");
	free(r.message);
}

Test(verify_full, reads_every_byte_of_the_device)
{
	char *dir = tu_tmpdir("vf");
	char *img = wt_image(dir, "a.img", 5 * MiB + 4096, 12, NULL);
	struct dev *d = wt_target(dir, "t.bin", 24 * MiB, NULL);
	struct write_opts o = wt_opts();
	struct blksrc *src = NULL;
	cr_assert_eq(blksrc_open_image(img, &src, NULL), 0);
	struct writer *w = NULL;
	cr_assert_eq(writer_new(d, src, &o, NULL, &w), 0);
	cr_assert_eq(writer_run(w, NULL, NULL), 0);
	for (int full = 0; full < 2; full++) {
		struct verify_opts vo = { .buffer_size = MiB, .queue_depth = 4, .stall_timeout = 60, .full = full };
		struct verify_result vr = { 0 };
		cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), 0);
		cr_assert_eq(vr.bytes_read, full ? 24 * MiB : 5 * MiB + 4096, "full=%d: %llu", full,
			     (unsigned long long)vr.bytes_read);
	}
	writer_free(w);
	blksrc_free(src);
	dev_free(d);
	tu_rmrf(dir);
	free(img);
	free(dir);
}
