/* The fake-capacity probe (blkio/probe.c, stage_probe_device): genuine targets are called
 * genuine and left byte-for-byte as they were; wrap-around fakes (large and small real
 * sizes, not powers of two) and limbo fakes (0x00 and 0xff fill) are classified and their
 * real size named to the byte; the stage maps every kind of fake (wrap-around, limbo, short)
 * to DEVICE_FAKE_CAPACITY at the first byte that is not real. */
#include <errno.h>
#include <stdio.h>

#include "blkio/probe.h"
#include "stages/stage_validate.h"
#include "wtest.h"

#define MiB (1u << 20)

Test(probe, genuine_is_restored)
{
	char *dir = tu_tmpdir("pr"), *tpath;
	uint8_t *data;
	char *img = wt_image(dir, "t.bin", 64 * MiB, 21, &data);
	struct dev *d = NULL;
	cr_assert_eq(dev_open(img, DEV_OPEN_WRITE, &d), 0);
	tpath = img;
	struct probe_result pr;
	cr_assert_eq(probe_run(d, NULL, &pr), 0);
	cr_assert_eq(pr.verdict, PROBE_GENUINE);
	cr_assert_eq(pr.usable_size, 64 * MiB);
	cr_assert_eq(pr.reported_size, 64 * MiB);
	cr_assert_eq(pr.restored, true);
	cr_assert_eq(pr.blocks_probed, 128 + 127 + 1); /* m = 128: run, giants, last block */
	uint8_t *got = wt_read_file(tpath, 64 * MiB);
	cr_assert(memcmp(got, data, 64 * MiB) == 0, "probe did not restore the target");
	free(got);
	free(data);
	dev_free(d);
	tu_rmrf(dir);
}

static struct probe_result probe_fake_spec(const struct dev_fault *f)
{
	char *dir = tu_tmpdir("pr");
	struct dev *inner = wt_target(dir, "t.bin", 64 * MiB, NULL), *d = NULL;
	cr_assert_eq(dev_new_faulty(inner, f, &d), 0);
	struct probe_result pr;
	cr_assert_eq(probe_run(d, NULL, &pr), 0);
	dev_free(d);
	tu_rmrf(dir);
	return pr;
}

static struct probe_result probe_fake(uint64_t real, bool wrap, uint8_t fill)
{
	char *dir = tu_tmpdir("pr");
	struct dev *inner = wt_target(dir, "t.bin", 64 * MiB, NULL), *d = NULL;
	struct dev_fault f = { .real_size = real, .wrap = wrap, .limbo_fill = fill };
	cr_assert_eq(dev_new_faulty(inner, &f, &d), 0);
	struct probe_result pr;
	cr_assert_eq(probe_run(d, NULL, &pr), 0);
	dev_free(d);
	tu_rmrf(dir);
	return pr;
}

Test(probe, wraparound_large)
{
	uint64_t real = 40 * MiB + 12 * 4096;
	struct probe_result pr = probe_fake(real, true, 0);
	cr_assert_eq(pr.verdict, PROBE_WRAPAROUND);
	cr_assert_eq(pr.usable_size, real);
	cr_assert_eq(pr.alias_from - pr.alias_to, real);
}

Test(probe, wraparound_smaller_than_the_run)
{
	uint64_t real = 75 * 4096; /* below m = 128 blocks */
	struct probe_result pr = probe_fake(real, true, 0);
	cr_assert_eq(pr.verdict, PROBE_WRAPAROUND);
	cr_assert_eq(pr.usable_size, real);
}

Test(probe, wraparound_power_of_two)
{
	struct probe_result pr = probe_fake(32 * MiB, true, 0);
	cr_assert_eq(pr.verdict, PROBE_WRAPAROUND);
	cr_assert_eq(pr.usable_size, 32 * MiB);
}

Test(probe, limbo_zeros)
{
	uint64_t real = 40 * MiB + 20 * 4096;
	struct probe_result pr = probe_fake(real, false, 0x00);
	cr_assert_eq(pr.verdict, PROBE_LIMBO);
	cr_assert_eq(pr.usable_size, real);
}

Test(probe, limbo_ff_on_a_point)
{
	uint64_t real = 16 * MiB; /* exactly on a probed block */
	struct probe_result pr = probe_fake(real, false, 0xff);
	cr_assert_eq(pr.verdict, PROBE_LIMBO);
	cr_assert_eq(pr.usable_size, real);
}

Test(probe, short_stick_fails_beyond_its_real_size)
{
	uint64_t real = 24 * MiB + 7 * 4096;
	struct dev_fault f = { .real_size = real, .short_eio = true };
	struct probe_result pr = probe_fake_spec(&f);
	cr_assert_eq(pr.verdict, PROBE_SHORT, "%s", probe_verdict_name(pr.verdict));
	cr_assert_eq(pr.usable_size, real);
	cr_assert_eq(pr.reported_size, 64 * MiB);
}

/* The validation stage on a fake: DEVICE_FAKE_CAPACITY, usable size and bad offset = the real
 * size, the verdict named in the message, exactly one error log row carrying the code. */
static void stage_fake_case(const struct dev_fault *f, const char *verdict)
{
	char *dir = tu_tmpdir("pr");
	struct dev *inner = wt_target(dir, "t.bin", 64 * MiB, NULL), *d = NULL;
	cr_assert_eq(dev_new_faulty(inner, f, &d), 0);
	struct write_opts o = wt_opts();
	struct job_spec job = { 0 };
	struct wt_logcap lc = { 0 };
	struct stage_ctx ctx = { .job = &job, .dev = d, .opts = &o, .sink = { .userdata = &lc, .log = wt_cap_log } };
	cr_assert_eq(stage_probe_device(&ctx), UFC_DEVICE_FAKE_CAPACITY);
	cr_assert_eq(ctx.code, UFC_DEVICE_FAKE_CAPACITY);
	cr_assert_eq(ctx.usable_size, f->real_size);
	cr_assert_eq(ctx.bad_offset, f->real_size);
	char *want = NULL;
	cr_assert(asprintf(&want, "is fake (%s)", verdict) > 0);
	cr_assert(strstr(ctx.message, want), "%s", ctx.message);
	free(want);
	cr_assert_eq(lc.n_err, 0, "the stage writes no error row: the worker writes the one row");
	cr_assert_not_null(ctx.details);
	cr_assert(strstr(ctx.details, verdict), "%s", ctx.details);
	stage_ctx_done(&ctx);
	dev_free(d);
	tu_rmrf(dir);
	free(dir);
}

Test(probe, stage_maps_fake_to_code)
{
	struct dev_fault f = { .real_size = 48 * MiB + 4096, .wrap = true };
	stage_fake_case(&f, "wraparound");
}

Test(probe, stage_maps_limbo_fake_to_code)
{
	struct dev_fault f = { .real_size = 40 * MiB + 20 * 4096, .limbo_fill = 0x00 };
	stage_fake_case(&f, "limbo");
}

Test(probe, stage_maps_limbo_ff_fake_to_code)
{
	struct dev_fault f = { .real_size = 16 * MiB, .limbo_fill = 0xff };
	stage_fake_case(&f, "limbo");
}

Test(probe, stage_maps_short_fake_to_code)
{
	struct dev_fault f = { .real_size = 24 * MiB + 7 * 4096, .short_eio = true };
	stage_fake_case(&f, "short");
}

Test(probe, stage_genuine_sets_usable)
{
	char *dir = tu_tmpdir("pr");
	struct dev *d = wt_target(dir, "t.bin", 32 * MiB, NULL);
	struct write_opts o = wt_opts();
	struct job_spec job = { 0 };
	struct stage_ctx ctx = { .job = &job, .dev = d, .opts = &o };
	cr_assert_eq(stage_probe_device(&ctx), UFC_NONE);
	cr_assert_eq(ctx.usable_size, 32 * MiB);
	stage_ctx_done(&ctx);
	dev_free(d);
	tu_rmrf(dir);
}

/* Validation refuses a stick below the order's capacity less the tolerance, and the message
 * names the three sizes each as itself: the stick's, the capacity sold, and the least accepted
 * (it once printed one of the last two twice). */
Test(probe, validation_too_small_names_every_size)
{
	char *dir = tu_tmpdir("pr");
	char *img = wt_image(dir, "a.img", MiB, 4, NULL);
	struct dev *d = wt_target(dir, "t.bin", 32 * MiB, NULL);
	struct write_opts o = wt_opts();
	o.capacity_tolerance = 0.25;
	struct job_spec job = { .image_path = img, .image_root = dir, .capacity_bytes = 64 * MiB };
	struct stage_ctx ctx = { .job = &job, .dev = d, .opts = &o };

	cr_assert_eq(stage_run(STAGE_VALIDATION, &ctx), UFC_DEVICE_TOO_SMALL);
	char *want = NULL;
	cr_assert(asprintf(&want,
			   "%s holds 32.0 MiB; the order is for 64.0 MiB (at least 48.0 MiB with 25%% tolerance)",
			   dev_name(d)) > 0);
	cr_assert_str_eq(ctx.message, want);
	free(want);
	stage_ctx_done(&ctx);
	dev_free(d);
	free(img);
	tu_rmrf(dir);
	free(dir);
}
