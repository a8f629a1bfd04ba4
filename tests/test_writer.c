/* The writer and the verifier (blkio/writer.c, verify.c, stage_write.c) on regular files and
 * on the faulty device: byte-exact round trips, every write/read fault with its code and exact
 * offset (a stick gone mid-write, and fake capacity — wrap-around and limbo — caught by the
 * read-back at the first bad byte), the held-back head, cancellation, the stall watchdog (a
 * stuck write abandoned safely; a stuck write and a stuck sync each failing the writing stage
 * with WRITE_IO), resume with exact byte counts, and a proof that verification cannot be
 * satisfied by the page cache (loop device). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <time.h>

#include "helpers/stalldev.h"
#include "stages/stage_write.h"
#include "blkio/verify.h"
#include "blkio/writer.h"
#include "util/macro.h"
#include "wtest.h"

#define MiB (1u << 20)

static struct verify_opts vopts(void)
{
	return (struct verify_opts){ .buffer_size = MiB, .queue_depth = 4, .stall_timeout = 60 };
}

static int reopen_path(void *ud, struct blksrc **ret) { return blksrc_open_image(ud, ret, NULL); }

/* Write image at path onto d; returns writer_run's result, the writer in *ret_w. */
static int write_img(struct dev *d, const char *img, const struct write_opts *o, const char *resume,
		     uint64_t sync_every, struct blksrc **ret_src, struct writer **ret_w)
{
	struct blksrc *src = NULL;
	cr_assert_eq(blksrc_open_image(img, &src, NULL), 0);
	struct write_opts wo = *o;
	if (sync_every)
		wo.sync_interval = sync_every;
	struct writer *w = NULL;
	cr_assert_eq(writer_new(d, src, &wo, resume, &w), 0);
	int r = writer_run(w, NULL, NULL);
	*ret_src = src;
	*ret_w = w;
	return r;
}

Test(writer, raw_roundtrip_unaligned_tail)
{
	char *dir = tu_tmpdir("wr"), *tpath;
	uint8_t *data;
	size_t len = 8 * MiB + 1000;
	char *img = wt_image(dir, "a.img", len, 7, &data);
	struct dev *d = wt_target(dir, "t.bin", 16 * MiB, &tpath);
	struct write_opts o = wt_opts();
	struct blksrc *src;
	struct writer *w;

	cr_assert_eq(write_img(d, img, &o, NULL, 0, &src, &w), 0);
	size_t padded = ALIGN_UP(len, dev_block_size(d));
	cr_assert_eq(writer_stats(w)->bytes_written, padded);
	struct verify_opts vo = vopts();
	struct verify_result vr;
	cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), 0);
	cr_assert_eq(vr.bytes_read, padded);
	uint8_t *got = wt_read_file(tpath, 9 * MiB);
	cr_assert(memcmp(got, data, len) == 0);
	for (size_t i = len; i < 9 * MiB; i++)
		cr_assert_eq(got[i], 0, "byte %zu", i);
	size_t nc;
	writer_chunks(w, &nc);
	cr_assert_eq(nc, 9); /* [0,1M) head + 7 full windows + the tail window */
	free(got);
	free(data);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	tu_rmrf(dir);
}

static struct dev *faulty(const char *dir, uint64_t size, const struct dev_fault *f, char **ret_path)
{
	struct dev *inner = wt_target(dir, "t.bin", size, ret_path), *d = NULL;
	cr_assert_eq(dev_new_faulty(inner, f, &d), 0);
	return d;
}

static void stage_ctx_for(struct stage_ctx *ctx, struct job_spec *job, struct dev *d, const struct write_opts *o,
			  const char *img)
{
	*ctx = (struct stage_ctx){ .job = job, .dev = d, .opts = o };
	static char root[4096]; /* the image's folder: content.images of this job */
	snprintf(root, sizeof(root), "%s", img);
	*strrchr(root, '/') = 0;
	*job = (struct job_spec){ .image_path = (char *)img, .image_root = root };
	char *err = NULL;
	cr_assert_eq(blksrc_open_image(img, &ctx->src, &err), 0);
}

/* One fault through the writing and verification stages, a row of the fault table below: an
 * 8 MiB pattern image (seed) written onto a 16 MiB file behind the faulty device; writing ends
 * with write_code (its bad offset named in the message), or succeeds with every byte counted and
 * verification ends with verify_code; the bad offset is bad, or what expect() works out from the
 * image and the fault (then the fault must show before the image's end). */
struct fault_case {
	uint64_t seed;
	struct dev_fault fault;
	bool no_probe;
	enum uf_code write_code, verify_code;
	uint64_t bad;
	uint64_t (*expect)(const uint8_t *data, uint64_t len, const struct dev_fault *f);
};

static void fault_case(const struct fault_case *c)
{
	char *dir = tu_tmpdir("wr");
	uint8_t *data;
	const uint64_t len = 8 * MiB;
	char *img = wt_image(dir, "a.img", len, c->seed, &data);
	struct dev *d = faulty(dir, 16 * MiB, &c->fault, NULL);
	struct write_opts o = wt_opts();
	o.probe = !c->no_probe;
	struct stage_ctx ctx;
	struct job_spec job;
	uint64_t bad = c->bad;

	if (c->expect) {
		bad = c->expect(data, len, &c->fault);
		cr_assert_lt(bad, len, "the fault would not show");
	}
	stage_ctx_for(&ctx, &job, d, &o, img);
	cr_assert_eq(stage_writing(&ctx), c->write_code, "%s", ctx.message ? ctx.message : "");
	if (c->write_code == UFC_NONE) {
		cr_assert_eq(ctx.bytes_written, len);
		cr_assert_eq(stage_verification(&ctx), c->verify_code);
	}
	enum uf_code want = c->write_code != UFC_NONE ? c->write_code : c->verify_code;
	cr_assert_eq(ctx.code, want);
	cr_assert_eq(ctx.bad_offset, bad);
	char *at = NULL;
	cr_assert(asprintf(&at, "at offset %llu", (unsigned long long)bad) > 0);
	cr_assert(strstr(ctx.message, at), "%s", ctx.message);
	free(at);
	stage_ctx_done(&ctx);
	free(data);
	writer_dev_free(d);
	tu_rmrf(dir);
	free(img);
	free(dir);
}

Test(writer, eio_on_write_names_the_block)
{
	/* the block covering the offset (file blocks are 4096 bytes) */
	fault_case(&(struct fault_case){
		.seed = 1, .fault = { .fail_write_at = 5 * MiB + 12345 }, .write_code = UFC_WRITE_IO, .bad = 5255168 });
}

/* A stick that refuses writes as read-only (EROFS), or a slot file made immutable (EPERM) or
 * unwritable (EACCES) under the writer: DEVICE_READ_ONLY, a bad stick (released without
 * spending an attempt), with a reason that says read-only and where. */
Test(writer, write_refused_as_read_only_is_device_read_only)
{
	const int errs[] = { EROFS, EPERM, EACCES };
	for (size_t i = 0; i < ARRAY_SIZE(errs); i++) {
		char *dir = tu_tmpdir("wr");
		char *img = wt_image(dir, "a.img", 8 * MiB, 1, NULL);
		struct dev_fault f = { .fail_write_at = 5 * MiB + 12345, .fail_write_errno = errs[i] };
		struct dev *d = faulty(dir, 16 * MiB, &f, NULL);
		struct write_opts o = wt_opts();
		struct stage_ctx ctx;
		struct job_spec job;

		stage_ctx_for(&ctx, &job, d, &o, img);
		cr_assert_eq(stage_writing(&ctx), UFC_DEVICE_READ_ONLY, "errno %d", errs[i]);
		cr_assert_eq(ctx.code, UFC_DEVICE_READ_ONLY);
		cr_assert_eq(uf_code_class(ctx.code), UFC_CLASS_BAD_STICK);
		char *want = NULL;
		/* the write of the 1 MiB buffer that covers the faulty offset is refused */
		cr_assert_eq(ctx.bad_offset, 5 * MiB);
		cr_assert(asprintf(&want, "read-only: %s refused the write at offset 5242880: %s", dev_name(d),
				   strerror(errs[i])) > 0);
		cr_assert_str_eq(ctx.message, want);
		free(want);
		stage_ctx_done(&ctx);
		writer_dev_free(d);
		tu_rmrf(dir);
		free(img);
		free(dir);
	}
}

struct unlinker {
	const char *path;
	bool done;
};

static void unlink_at_2mib(void *ud, enum stage_id st, uint64_t done, uint64_t total)
{
	struct unlinker *u = ud;
	(void)st;
	(void)total;
	if (!u->done && done >= 2 * MiB) {
		cr_assert_eq(unlink(u->path), 0);
		u->done = true;
	}
}

/* The target file is deleted while it is written: the attempt ends DEVICE_GONE naming that, not
 * done into an inode no one can read. */
Test(writer, target_unlinked_mid_write_is_device_gone)
{
	char *dir = tu_tmpdir("wr");
	char *img = wt_image(dir, "a.img", 8 * MiB, 3, NULL);
	char *path = NULL;
	struct dev *d = wt_target(dir, "t.bin", 16 * MiB, &path);
	struct write_opts o = wt_opts();
	struct stage_ctx ctx;
	struct job_spec job;
	struct unlinker u = { .path = path };

	stage_ctx_for(&ctx, &job, d, &o, img);
	ctx.sink = (struct stage_sink){ .userdata = &u, .progress = unlink_at_2mib };
	cr_assert_eq(stage_writing(&ctx), UFC_DEVICE_GONE, "%s", ctx.message ? ctx.message : "");
	cr_assert(u.done);
	char *want = NULL;
	cr_assert(asprintf(&want, "%s was deleted during the write (at offset ", path) > 0);
	cr_assert(strncmp(ctx.message, want, strlen(want)) == 0, "%s", ctx.message);
	cr_assert(strstr(ctx.message, "): nothing written to it is on any stick"), "%s", ctx.message);
	free(want);
	stage_ctx_done(&ctx);
	writer_dev_free(d);
	tu_rmrf(dir);
	free(path);
	free(img);
	free(dir);
}

/* Lost bytes read back as the target's zeros: the first of them that is not a zero in the
 * image. */
static uint64_t first_lost_byte(const uint8_t *data, uint64_t len, const struct dev_fault *f)
{
	uint64_t o = f->short_write_at;
	while (o < len && data[o] == 0)
		o++;
	return o;
}

Test(writer, short_write_caught_by_verify_exact_byte)
{
	fault_case(&(struct fault_case){ .seed = 2,
					 .fault = { .short_write_at = 3 * MiB + 3 * 4096 + 100 },
					 .verify_code = UFC_VERIFY_MISMATCH,
					 .expect = first_lost_byte });
}

Test(writer, bit_flip_on_read_exact_byte)
{
	fault_case(&(struct fault_case){ .seed = 3,
					 .fault = { .flip_read_at = 6 * MiB + 777 },
					 .verify_code = UFC_VERIFY_MISMATCH,
					 .bad = 6 * MiB + 777 });
}

Test(writer, bit_flip_without_reopen_names_the_chunk)
{
	char *dir = tu_tmpdir("wr");
	char *img = wt_image(dir, "a.img", 8 * MiB, 3, NULL);
	struct dev_fault f = { .flip_read_at = 6 * MiB + 777 };
	struct dev *d = faulty(dir, 16 * MiB, &f, NULL);
	struct write_opts o = wt_opts();
	struct blksrc *src;
	struct writer *w;

	cr_assert_eq(write_img(d, img, &o, NULL, 0, &src, &w), 0);
	struct verify_opts vo = vopts();
	struct verify_result vr;
	cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), -EBADMSG);
	cr_assert_eq(vr.bad_offset, 6 * MiB);
	cr_assert_eq(vr.exact, false);
	vo.reopen = reopen_path;
	vo.reopen_userdata = img;
	cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), -EBADMSG);
	cr_assert_eq(vr.bad_offset, 6 * MiB + 777);
	cr_assert_eq(vr.exact, true);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	tu_rmrf(dir);
}

Test(writer, eio_on_read_back)
{
	/* the block of the failing read */
	fault_case(&(struct fault_case){ .seed = 4,
					 .fault = { .fail_read_at = 7 * MiB + 5000 },
					 .verify_code = UFC_VERIFY_MISMATCH,
					 .bad = 7 * MiB + 4096 });
}

Test(writer, gone_mid_write_is_device_gone)
{
	/* The head is held back, so the gone_after bytes that reached the stick are
	 * [WRITER_HEAD, WRITER_HEAD + gone_after) (gone_after is a whole number of buffers); the
	 * write after them is the first to fail, at its start. */
	fault_case(&(struct fault_case){ .seed = 5,
					 .fault = { .gone_after = 4 * MiB },
					 .write_code = UFC_DEVICE_GONE,
					 .bad = WRITER_HEAD + 4 * MiB });
}

/* ---- fake capacity through the writer and the verifier -----------------------------------------
 * Sticks that claim more than they hold, with no probe before the write (as with probe = false):
 * every write "succeeds", and it is the read-back that must name the first byte that is not
 * the image. The expected offset is worked out here from the fault and the writer's documented
 * order (writer.h: [WRITER_HEAD, end) in offset order, the held-back head last). */

/* What a reader of offset o sees after the writer wrote data[0, len) onto a stick whose
 * addresses wrap around real bytes: the last write that landed on o % real. Returns the first
 * offset where that is not data[o], or len. */
static uint64_t first_bad_after_wrap(const uint8_t *data, uint64_t len, uint64_t real)
{
	uint8_t *medium = calloc(1, real);
	cr_assert(medium);
	for (uint64_t o = WRITER_HEAD; o < len; o++)
		medium[o % real] = data[o];
	for (uint64_t o = 0; o < MIN(len, WRITER_HEAD); o++)
		medium[o % real] = data[o];
	uint64_t bad = len;
	for (uint64_t o = 0; o < len && bad == len; o++)
		if (medium[o % real] != data[o])
			bad = o;
	free(medium);
	return bad;
}

/* The stick's limbo: writes at or past real are dropped, reads there return fill. */
static uint64_t first_bad_after_limbo(const uint8_t *data, uint64_t len, uint64_t real, uint8_t fill)
{
	for (uint64_t o = real; o < len; o++)
		if (data[o] != fill)
			return o;
	return len;
}

static uint64_t wrap_expect(const uint8_t *data, uint64_t len, const struct dev_fault *f)
{
	return first_bad_after_wrap(data, len, f->real_size);
}

static uint64_t limbo_expect(const uint8_t *data, uint64_t len, const struct dev_fault *f)
{
	return first_bad_after_limbo(data, len, f->real_size, f->limbo_fill);
}

Test(writer, wrap_around_stick_caught_by_verify_exact_byte)
{
	/* 16 MiB claimed, 3 MiB + 64 KiB real: the image past 3 MiB + 64 KiB lands again on the
	 * stick's first 3 MiB + 64 KiB (twice over), the head rewritten last. */
	fault_case(&(struct fault_case){ .seed = 12,
					 .fault = { .real_size = 3 * MiB + 64 * 1024, .wrap = true },
					 .no_probe = true,
					 .verify_code = UFC_VERIFY_MISMATCH,
					 .expect = wrap_expect });
}

Test(writer, limbo_stick_caught_by_verify_exact_byte)
{
	/* Writes at or past 5 MiB + 8 KiB vanish; reads there return 0xff. */
	fault_case(&(struct fault_case){ .seed = 13,
					 .fault = { .real_size = 5 * MiB + 8192, .limbo_fill = 0xff },
					 .no_probe = true,
					 .verify_code = UFC_VERIFY_MISMATCH,
					 .expect = limbo_expect });
}

Test(writer, image_larger_than_stick)
{
	char *dir = tu_tmpdir("wr");
	char *img = wt_image(dir, "a.img", 9 * MiB, 5, NULL);
	struct dev *d = wt_target(dir, "t.bin", 8 * MiB, NULL);
	struct write_opts o = wt_opts();
	struct stage_ctx ctx;
	struct job_spec job;

	stage_ctx_for(&ctx, &job, d, &o, img);
	cr_assert_eq(stage_writing(&ctx), UFC_CONTENT_TOO_LARGE);
	stage_ctx_done(&ctx);
	writer_dev_free(d);
	tu_rmrf(dir);
}

/* The writing stage with no job (the daemon always has one; a caller such as a test or a
 * one-off tool need not) and an image that shrank after it was opened: IMAGE_UNREADABLE naming
 * the truncation, where it once dereferenced the absent job. */
Test(writer, stage_without_job_image_truncated)
{
	char *dir = tu_tmpdir("wr");
	char *img = wt_image(dir, "a.img", 4 * MiB, 6, NULL);
	struct dev *d = wt_target(dir, "t.bin", 8 * MiB, NULL);
	struct write_opts o = wt_opts();
	struct stage_ctx ctx = { .dev = d, .opts = &o };

	cr_assert_eq(blksrc_open_image(img, &ctx.src, NULL), 0);
	cr_assert_eq(truncate(img, 2 * MiB), 0);
	cr_assert_eq(stage_writing(&ctx), UFC_IMAGE_UNREADABLE);
	cr_assert_eq(ctx.code, UFC_IMAGE_UNREADABLE);
	cr_assert(strstr(ctx.message, "image truncated at byte 2097152 of 4194304"), "%s", ctx.message);
	stage_ctx_done(&ctx);
	writer_dev_free(d);
	tu_rmrf(dir);
}

/* Cancel after the third buffer: -ECANCELED, and the head (first MiB) never reached the
 * target, so the interrupted stick does not look valid. */
static atomic_bool cancel_flag;
static unsigned progress_calls;
static void cancel_after_3(void *ud, uint64_t done, uint64_t total)
{
	(void)ud;
	(void)done;
	(void)total;
	if (++progress_calls == 3)
		atomic_store(&cancel_flag, true);
}

Test(writer, cancel_leaves_head_unwritten)
{
	char *dir = tu_tmpdir("wr"), *tpath;
	char *img = wt_image(dir, "a.img", 8 * MiB, 6, NULL);
	struct dev *d = wt_target(dir, "t.bin", 16 * MiB, &tpath);
	struct write_opts o = wt_opts();
	struct blksrc *src;
	struct writer *w;

	cr_assert_eq(blksrc_open_image(img, &src, NULL), 0);
	cr_assert_eq(writer_new(d, src, &o, NULL, &w), 0);
	struct writer_cbs cbs = { .progress = cancel_after_3 };
	atomic_store(&cancel_flag, false);
	progress_calls = 0;
	cr_assert_eq(writer_run(w, &cancel_flag, &cbs), -ECANCELED);
	cr_assert_eq(progress_calls, 3);
	uint8_t *got = wt_read_file(tpath, MiB);
	for (size_t i = 0; i < MiB; i++)
		cr_assert_eq(got[i], 0);
	free(got);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	tu_rmrf(dir);
}

/* ---- resume ------------------------------------------------------------------------------- */

static void resume_case(uint64_t corrupt_at, uint64_t expect_from)
{
	char *dir = tu_tmpdir("wr"), *tpath;
	uint8_t *data;
	char *img = wt_image(dir, "a.img", 16 * MiB, 8, &data);
	struct dev_fault f = { .gone_after = 9 * MiB + MiB / 2 };
	struct dev *d = faulty(dir, 32 * MiB, &f, &tpath);
	struct write_opts o = wt_opts();
	struct blksrc *src;
	struct writer *w;

	int r = write_img(d, img, &o, NULL, 2 * MiB, &src, &w);
	cr_assert(dev_errno_is_gone(r), "r=%d", r);
	char *state = NULL;
	cr_assert_eq(writer_state_json(w, &state), 0);
	cr_assert(strstr(state, "\"hwm\":9437184"), "%s", state);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);

	if (corrupt_at) {
		int fd = open(tpath, O_WRONLY | O_CLOEXEC);
		cr_assert(fd >= 0);
		uint8_t x = (uint8_t)~data[corrupt_at];
		cr_assert_eq(pwrite(fd, &x, 1, (off_t)corrupt_at), 1);
		close(fd);
	}
	cr_assert_eq(dev_open(tpath, DEV_OPEN_WRITE, &d), 0);
	cr_assert_eq(write_img(d, img, &o, state, 2 * MiB, &src, &w), 0);
	const struct writer_stats *st = writer_stats(w);
	cr_assert_eq(st->resumed, true);
	cr_assert_eq(st->resume_from, expect_from);
	cr_assert_eq(st->bytes_written, MiB + (16 * MiB - expect_from));
	cr_assert_eq(st->bytes_reused, expect_from - MiB);
	struct verify_opts vo = vopts();
	cr_assert_eq(writer_verify(w, d, &vo, NULL, NULL), 0);
	uint8_t *got = wt_read_file(tpath, 16 * MiB);
	cr_assert(memcmp(got, data, 16 * MiB) == 0);
	free(got);
	free(state);
	free(data);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	tu_rmrf(dir);
}

Test(writer, resume_continues_after_last_sync) { resume_case(0, 9 * MiB); }
Test(writer, resume_rewrites_from_corrupted_chunk) { resume_case(5 * MiB + 100, 5 * MiB); }

Test(writer, resume_refuses_a_changed_image)
{
	char *dir = tu_tmpdir("wr"), *tpath;
	char *img = wt_image(dir, "a.img", 16 * MiB, 8, NULL);
	struct dev_fault f = { .gone_after = 9 * MiB + MiB / 2 };
	struct dev *d = faulty(dir, 32 * MiB, &f, &tpath);
	struct write_opts o = wt_opts();
	struct blksrc *src;
	struct writer *w;

	write_img(d, img, &o, NULL, 2 * MiB, &src, &w);
	char *state = NULL;
	cr_assert_eq(writer_state_json(w, &state), 0);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	char *img2 = wt_image(dir, "b.img", 16 * MiB, 9, NULL);
	cr_assert_eq(dev_open(tpath, DEV_OPEN_WRITE, &d), 0);
	/* The device still matches the state, but the new image's chunks differ from it. */
	cr_assert_eq(write_img(d, img2, &o, state, 2 * MiB, &src, &w), -ESTALE);
	cr_assert_eq(writer_stats(w)->bad_offset, MiB);
	free(state);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	tu_rmrf(dir);
}

/* A resume state as writer_state_json() writes it: chunks at the given offsets (zero hashes),
 * the extents given as JSON text, hwm. */
static char *state_text(const uint64_t *offs, size_t n, const char *ext, uint64_t hwm)
{
	unsigned char bin[24 * 8] = { 0 };
	char b64[sizeof(bin) * 2], *s = NULL;
	cr_assert(n <= 8);
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 8; k++)
			bin[i * 24 + (size_t)k] = (unsigned char)(offs[i] >> (8 * k));
	EVP_EncodeBlock((unsigned char *)b64, bin, (int)(n * 24));
	cr_assert(asprintf(&s, "{\"v\":1,\"cs\":%u,\"hwm\":%llu,\"ext\":%s,\"chunks\":\"%s\"}", 2 * MiB,
			   (unsigned long long)hwm, ext, b64) > 0);
	return s;
}

/* Found by fuzz_resume_state (fuzz/regress/resume_state): a state from the database is
 * untrusted; one that writer_state_json() could not have written is refused as a whole
 * (-EINVAL), and the extent arithmetic never overflows (a + len was signed: UB). */
Test(writer, resume_parse_refuses_inconsistent_states)
{
	const uint64_t three[] = { MiB, 2 * MiB, 4 * MiB }, odd[] = { MiB, 3 * MiB }, low[] = { 4096 };
	const struct {
		const uint64_t *offs;
		size_t n;
		const char *ext;
		uint64_t hwm;
		int want;
	} cases[] = {
		{ three, 3, "[[1048576,5242880]]", 6 * MiB, 0 },
		{ NULL, 0, "[]", MiB, 0 },
		{ three, 3, "[[1048576,5242880]]", 6 * MiB - 1, -EINVAL },	   /* last window ends past hwm */
		{ three, 3, "[]", 6 * MiB, -EINVAL },				   /* chunks but no extent */
		{ odd, 2, "[[1048576,4194304]]", 6 * MiB, -EINVAL },		   /* 3 MiB is no window start */
		{ low, 1, "[[4096,4096]]", 2 * MiB, -EINVAL },			   /* in the held-back head */
		{ three, 3, "[[1048576,9223372036854775807]]", 6 * MiB, -EINVAL }, /* overflow */
		{ three, 3, "[[1048576,4096],[9223372036854775807,1]]", 6 * MiB, -EINVAL }, /* overflow */
		{ three, 3, "[[0,6291456]]", 6 * MiB, -EINVAL },			    /* below the head */
		{ three, 3, "[[1048576,5242881]]", 6 * MiB, -EINVAL },			    /* past hwm */
		{ NULL, 0, "[]", 4096, -EINVAL },					    /* hwm in the head */
		{ NULL, 0, "[]", 64 * MiB + 4096, -EINVAL },				    /* past the device */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *t = state_text(cases[i].offs, cases[i].n, cases[i].ext, cases[i].hwm);
		struct writer_resume rs = { 0 };
		int r = writer_resume_parse(t, 2 * MiB, 64 * MiB, &rs);
		cr_assert_eq(r, cases[i].want, "case %zu (%s): %d", i, t, r);
		if (r == 0) {
			cr_assert_eq(rs.n_chunks, cases[i].n);
			cr_assert_eq(rs.hwm, cases[i].hwm);
			writer_resume_done(&rs);
		}
		free(t);
	}
}

/* A state with chunks and no extents used to make the resume check fail the whole write
 * (-EINVAL from verify_chunks); it is now ignored as malformed and the stick written whole. */
Test(writer, resume_state_without_extents_is_ignored)
{
	char *dir = tu_tmpdir("wr"), *tpath;
	uint8_t *data;
	char *img = wt_image(dir, "a.img", 16 * MiB, 8, &data);
	struct dev *d = wt_target(dir, "t.bin", 32 * MiB, &tpath);
	struct write_opts o = wt_opts();
	struct blksrc *src;
	struct writer *w;
	const uint64_t offs[] = { MiB, 2 * MiB };

	o.buffer_size = 2 * MiB; /* the chunk size state_text() records */
	char *state = state_text(offs, 2, "[]", 4 * MiB);

	cr_assert_eq(write_img(d, img, &o, state, 2 * MiB, &src, &w), 0);
	const struct writer_stats *st = writer_stats(w);
	cr_assert_eq(st->resumed, false);
	cr_assert_str_eq(st->resume_note, "resume state is malformed");
	cr_assert_eq(st->bytes_written, 16 * MiB);
	uint8_t *got = wt_read_file(tpath, 16 * MiB);
	cr_assert(memcmp(got, data, 16 * MiB) == 0);
	free(got);
	free(state);
	free(data);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	tu_rmrf(dir);
}

/* ---- the stall watchdog ----------------------------------------------------------------------- */

/* The stuck device: tests/helpers/stalldev.h. */

Test(writer, stall_watchdog_abandons_stuck_write)
{
	char *dir = tu_tmpdir("wr");
	char *img = wt_image(dir, "a.img", 8 * MiB, 10, NULL);
	struct stall_dev *s = stall_dev_new(4 * MiB);
	int release = s->release, freed = s->freed;
	struct write_opts o = wt_opts();
	o.stall_timeout = 0.2;
	struct blksrc *src;
	struct writer *w;

	cr_assert_eq(write_img(&s->base, img, &o, NULL, 0, &src, &w), -ETIMEDOUT);
	cr_assert_eq(writer_stats(w)->stalled, true);
	cr_assert_eq(writer_stats(w)->bad_offset, 4 * MiB); /* the write of [4M, 5M) hangs */
	writer_free(w);
	blksrc_free(src);
	/* The stuck thread still holds the device: freeing is handed to it. */
	writer_dev_free(&s->base);
	cr_assert_not(stall_dev_freed(freed, 0), "freed while a thread was inside it");
	stall_dev_release(release);
	cr_assert(stall_dev_freed(freed, 10000), "abandoned thread did not free the device");
	stall_dev_close_fds(release, freed);
	tu_rmrf(dir);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The writing stage failed on the watchdog: WRITE_IO at off, the stalled call ("write" or
 * "sync") and the 0.3 s timeout named in the writer's error and the stage's message, no log
 * row of the stage's own, and the failure's details: the offset and ETIMEDOUT. */
static void assert_stalled(const struct stage_ctx *ctx, const struct wt_logcap *lc, const char *call, uint64_t off)
{
	char want[128];
	cr_assert_eq(ctx->code, UFC_WRITE_IO);
	cr_assert_eq(ctx->bad_offset, off);
	const struct writer_stats *st = writer_stats(ctx->write_state);
	cr_assert_eq(st->stalled, true);
	cr_assert_eq(st->bad_offset, off);
	snprintf(want, sizeof(want), ": %s at offset %llu did not return within 0.3 s", call, (unsigned long long)off);
	cr_assert(strstr(st->error, want + 2), "%s", st->error);
	cr_assert(strstr(ctx->message, want), "%s", ctx->message);
	cr_assert_eq(lc->n, 0, "no log row: the failure and its details go to the worker's one row");
	snprintf(want, sizeof(want), "{\"offset\":%llu,\"errno\":%d}", (unsigned long long)off, ETIMEDOUT);
	cr_assert_str_eq(ctx->details, want);
}

/* Through the writing stage, write.stall_timeout = 0.3 s: a write that never returns fails the
 * stage with WRITE_IO at the stuck write's offset, after the watchdog and not after the write. */
Test(writer, stage_write_stall_is_write_io)
{
	char *dir = tu_tmpdir("wr");
	char *img = wt_image(dir, "a.img", 8 * MiB, 14, NULL);
	struct stall_dev *s = stall_dev_new(4 * MiB);
	int release = s->release, freed = s->freed;
	struct write_opts o = wt_opts();
	o.stall_timeout = 0.3;
	struct stage_ctx ctx;
	struct job_spec job;
	struct wt_logcap lc = { 0 };

	stage_ctx_for(&ctx, &job, &s->base, &o, img);
	ctx.sink = (struct stage_sink){ .userdata = &lc, .log = wt_cap_log };
	double t0 = now_s();
	cr_assert_eq(stage_writing(&ctx), UFC_WRITE_IO);
	double took = now_s() - t0;
	cr_assert_lt(took, 10.0, "the stage waited %.1f s: for the write, not the watchdog", took);
	assert_stalled(&ctx, &lc, "write", 4 * MiB); /* the write of [4M, 5M) hangs */
	stage_ctx_done(&ctx);
	writer_dev_free(&s->base);
	stall_dev_release(release);
	cr_assert(stall_dev_freed(freed, 10000), "abandoned thread did not free the device");
	stall_dev_close_fds(release, freed);
	tu_rmrf(dir);
	free(img);
	free(dir);
}

/* The same for a sync (fdatasync) that hangs: the faulty device's every sync takes 1.5 s, the
 * watchdog 0.3 s. The writer syncs the body [1M, 8M) before it writes the held-back head, so
 * the stuck call is that sync, at the end of the data: WRITE_IO at offset 8 MiB, the body on
 * the target, the head not (the interrupted stick does not look valid). */
Test(writer, stage_sync_stall_is_write_io)
{
	char *dir = tu_tmpdir("wr"), *tpath;
	uint8_t *data;
	char *img = wt_image(dir, "a.img", 8 * MiB, 15, &data);
	struct dev_fault f = { .stall_sync_ms = 1500 };
	struct dev *d = faulty(dir, 16 * MiB, &f, &tpath);
	struct write_opts o = wt_opts();
	o.stall_timeout = 0.3;
	struct stage_ctx ctx;
	struct job_spec job;
	struct wt_logcap lc = { 0 };

	stage_ctx_for(&ctx, &job, d, &o, img);
	ctx.sink = (struct stage_sink){ .userdata = &lc, .log = wt_cap_log };
	double t0 = now_s();
	cr_assert_eq(stage_writing(&ctx), UFC_WRITE_IO);
	double took = now_s() - t0;
	/* Read the target while the sync still sleeps (it wakes 1.5 s after it began). */
	uint8_t *got = wt_read_file(tpath, 16 * MiB);
	cr_assert_lt(took, 3.0, "the stage waited %.1f s: for the sync, not the watchdog", took);
	assert_stalled(&ctx, &lc, "sync", 8 * MiB);
	cr_assert_eq(ctx.bytes_written, 7 * MiB); /* the body; the head is still held back */
	for (size_t i = 0; i < MiB; i++)
		cr_assert_eq(got[i], 0, "head byte %zu written before the stalled sync returned", i);
	cr_assert(memcmp(got + MiB, data + MiB, 7 * MiB) == 0);
	for (size_t i = 8 * MiB; i < 16 * MiB; i++)
		cr_assert_eq(got[i], 0, "byte %zu", i);
	free(got);
	stage_ctx_done(&ctx);
	/* The sync is still sleeping inside d: freeing is handed to the abandoned thread. */
	writer_dev_free(d);
	/* When the sync comes back (1.5 s after it began), the abandoned thread must not write the
	 * head: the attempt has failed, the stick must not look valid. Watch it for a second more. */
	while (now_s() - t0 < 2.5) {
		uint8_t *h = wt_read_file(tpath, 4096);
		for (size_t i = 0; i < 4096; i++)
			cr_assert_eq(h[i], 0, "head byte %zu written after the attempt failed", i);
		free(h);
		(void)poll(NULL, 0, 50);
	}
	free(data);
	tu_rmrf(dir);
	free(tpath);
	free(img);
	free(dir);
}

/* ---- the page cache cannot satisfy verification ----------------------------------------------
 * A loop device over a file. usbforge writes through the loop device; then the loop device's
 * page cache is filled with the good data by a buffered read, and the backing file is changed
 * behind the loop device's back with O_DIRECT (so the loop device's cache still holds the old,
 * good bytes). The test first proves the trap is armed (a buffered read of the loop device
 * still returns the good byte), then that verification (with and without dev_reset) reads the
 * medium and reports the exact changed byte. A verifier that read through the page cache
 * would pass here. */
Test(writer, verification_is_not_fooled_by_page_cache)
{
	if (geteuid() != 0)
		cr_skip_test("needs root for losetup");
	char *dir = tu_tmpdir("wr");
	uint8_t *data;
	char *img = wt_image(dir, "a.img", 8 * MiB, 11, &data);
	char *back = tu_path(dir, "back.bin");
	int fd = open(back, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	cr_assert(fd >= 0 && ftruncate(fd, 16 * MiB) == 0);
	close(fd);
	char *cmd = NULL, loop[64] = "";
	cr_assert(asprintf(&cmd, "losetup -f --show %s", back) > 0);
	FILE *p = popen(cmd, "r");
	cr_assert(p && fgets(loop, sizeof(loop), p));
	pclose(p);
	loop[strcspn(loop, "\n")] = 0;
	cr_assert(strncmp(loop, "/dev/loop", 9) == 0, "losetup: %s", loop);

	struct dev *d = NULL;
	cr_assert_eq(dev_open(loop, DEV_OPEN_WRITE, &d), 0);
	struct write_opts o = wt_opts();
	struct blksrc *src;
	struct writer *w;
	cr_assert_eq(write_img(d, img, &o, NULL, 0, &src, &w), 0);

	/* Fill the loop device's page cache with the good bytes. */
	uint64_t at = 5 * MiB + 4242;
	int lfd = open(loop, O_RDONLY | O_CLOEXEC);
	cr_assert(lfd >= 0);
	uint8_t c;
	cr_assert_eq(pread(lfd, &c, 1, (off_t)at), 1);
	cr_assert_eq(c, data[at]);
	/* Change the medium behind it (O_DIRECT on the backing file, a whole block). */
	int bfd = open(back, O_RDWR | O_DIRECT | O_CLOEXEC);
	cr_assert(bfd >= 0);
	uint8_t *blk = dev_alloc_buf(4096);
	cr_assert_eq(pread(bfd, blk, 4096, (off_t)ALIGN_DOWN(at, 4096)), 4096);
	blk[at % 4096] ^= 0x40;
	cr_assert_eq(pwrite(bfd, blk, 4096, (off_t)ALIGN_DOWN(at, 4096)), 4096);
	close(bfd);
	/* The trap is armed: the cache still says the data is good. */
	cr_assert_eq(pread(lfd, &c, 1, (off_t)at), 1);
	cr_assert_eq(c, data[at], "page cache was not holding the old byte; the proof would be void");

	struct verify_opts vo = vopts();
	vo.reopen = reopen_path;
	vo.reopen_userdata = img;
	struct verify_result vr;
	/* No reset: O_DIRECT alone must see the medium. */
	cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), -EBADMSG);
	cr_assert_eq(vr.bad_offset, at);
	/* And with the reset the stage does. */
	cr_assert_eq(dev_reset(d), 0);
	cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), -EBADMSG);
	cr_assert_eq(vr.bad_offset, at);

	close(lfd);
	free(blk);
	writer_free(w);
	blksrc_free(src);
	writer_dev_free(d);
	free(cmd);
	cr_assert(asprintf(&cmd, "losetup -d %s", loop) > 0);
	cr_assert_eq(system(cmd), 0);
	free(cmd);
	free(data);
	tu_rmrf(dir);
}
