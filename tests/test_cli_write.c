/* `usbforge write / verify / probe` through the real binary: images of every format written to
 * files and compared byte for byte, the --yes rule when stdin is not a terminal, the
 * confirmation prompt on a terminal (a pty: "n" leaves the target untouched, "y" writes and
 * verifies; the prompt names the target and its size), verification
 * of a good and of a tampered target (exact offset), the probe on a genuine file, and the
 * safety refusals on loop devices (a mounted one, and one that is not a configured slot) with
 * their data proven untouched. Loop cases need root and skip without /dev/loop-control. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers/testutil.h"
#include "test_usb_loop.h"

extern char **environ;

#define IMG_SIZE ((size_t)3 * 1024 * 1024 + 1234) /* not a multiple of the block size */

static char *dir;
static char *img;      /* raw image, IMG_SIZE bytes of pattern */
static uint8_t *data;  /* its bytes */
static char *fileconf; /* static mode, one file slot */
static char *mnt;      /* mount point while a loop device is mounted, else NULL */
static struct tul_loop loop = { .fd = -1 };
static char *immutable; /* made mutable again by teardown */

struct run {
	int status;
	char *out, *err;
};

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "re");
	cr_assert(f, "open %s: %s", path, strerror(errno));
	char *s = NULL;
	size_t cap = 0, len = 0;
	for (;;) {
		if (len + 65536 + 1 > cap) {
			cap = (len + 65536 + 1) * 2;
			s = realloc(s, cap);
			cr_assert(s);
		}
		size_t n = fread(s + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	s[len] = 0;
	if (ret_len)
		*ret_len = len;
	return s;
}

/* Run argv (NULL-terminated; argv[0] the program) with stdin from /dev/null and output into
 * files; returns the exit status (128+signal when killed). */
static struct run spawn(const char *const *argv)
{
	char *outp = tu_path(dir, "stdout"), *errp = tu_path(dir, "stderr");
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_eq(posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0, "spawn %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	struct run r = {
		.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
		.out = slurp(outp, NULL),
		.err = slurp(errp, NULL),
	};
	free(outp);
	free(errp);
	return r;
}

/* usbforge with args, the config first. */
static struct run uf(const char *conf, const char *const *args)
{
	char *bin = tu_path(tu_binary_dir(), "cli/usbforge");
	const char *argv[16] = { bin, "--config", conf };
	int n = 3;
	for (int i = 0; args[i]; i++) {
		cr_assert(n < 15);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	struct run r = spawn(argv);
	free(bin);
	return r;
}
#define UF(conf, ...) uf(conf, (const char *const[]){ __VA_ARGS__, NULL })

static void run_ok(const char *const *argv)
{
	struct run r = spawn(argv);
	cr_assert_eq(r.status, 0, "%s failed (%d): %s", argv[0], r.status, r.err);
	free(r.out);
	free(r.err);
}
#define RUN_OK(...) run_ok((const char *const[]){ __VA_ARGS__, NULL })

static void done(struct run *r)
{
	free(r->out);
	free(r->err);
}

static void write_conf(const char *path, const char *slot_path)
{
	char *text = NULL;
	cr_assert(asprintf(&text, "usb = { mode = \"static\"; slots = ( { name = \"A\"; path = \"%s\"; } ); };\n",
			   slot_path) > 0);
	tu_write_file(path, text, strlen(text));
	free(text);
}

static void setup(void)
{
	dir = tu_tmpdir("cli_write");
	img = tu_path(dir, "in.img");
	data = malloc(IMG_SIZE);
	cr_assert(data);
	tu_fill_pattern(data, IMG_SIZE, 77);
	/* A run of zeros inside, so that compressors and sparse paths have something to do. */
	memset(data + 1024 * 1024, 0, 512 * 1024);
	tu_write_file(img, data, IMG_SIZE);
	fileconf = tu_path(dir, "file.conf");
	char *slot = tu_path(dir, "slot.img");
	write_conf(fileconf, slot);
	free(slot);
}

static void teardown(void)
{
	if (immutable) {
		(void)tu_set_immutable(immutable, false);
		free(immutable);
		immutable = NULL;
	}
	if (mnt) {
		RUN_OK("umount", mnt);
		free(mnt);
		mnt = NULL;
	}
	if (loop.path)
		tul_detach(&loop);
	free(data);
	free(img);
	free(fileconf);
	tu_rmrf(dir);
	free(dir);
}

TestSuite(cli_write, .init = setup, .fini = teardown);

/* The file at path holds exactly the image. */
static void assert_is_image(const char *path)
{
	size_t len;
	char *got = slurp(path, &len);
	cr_assert_eq(len, IMG_SIZE, "%s: %zu bytes", path, len);
	cr_assert(memcmp(got, data, IMG_SIZE) == 0, "%s differs from the image", path);
	free(got);
}

static void write_format(const char *tool, const char *ext)
{
	char *src = NULL, *out = NULL, *name = NULL;
	if (tool) {
		RUN_OK(tool, "-k", "-q", "-f", img);
		cr_assert(asprintf(&src, "%s.%s", img, ext) > 0);
	} else {
		src = strdup(img);
	}
	cr_assert(asprintf(&name, "out-%s.img", ext) > 0);
	out = tu_path(dir, name);
	struct run r = UF(fileconf, "write", out, src, "--yes");
	cr_assert_eq(r.status, 0, "%s: %s", ext, r.err);
	cr_assert(strstr(r.out, "wrote ") && strstr(r.out, "verified in"), "%s", r.out);
	done(&r);
	assert_is_image(out);
	free(src);
	free(out);
	free(name);
}

Test(cli_write, raw_to_new_file) { write_format(NULL, "raw"); }
Test(cli_write, zst_to_new_file) { write_format("zstd", "zst"); }
Test(cli_write, gz_to_new_file) { write_format("gzip", "gz"); }
Test(cli_write, xz_to_new_file) { write_format("xz", "xz"); }

Test(cli_write, json_document_of_a_write)
{
	char *out = tu_path(dir, "j.img");
	struct run r = UF(fileconf, "--json", "write", out, img, "--yes");
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* bytes_written counts the padded last block: 3 MiB + 4096. */
	cr_assert(strstr(r.out, "\"bytes_written\": 3149824"), "%s", r.out);
	cr_assert(strstr(r.out, "\"verified\": true"), "%s", r.out);
	cr_assert(strstr(r.out, "\"rate_bytes_per_s\": "), "%s", r.out);
	done(&r);
	r = UF(fileconf, "--json", "write", out, img, "--yes", "--no-verify");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"verified\": false"), "%s", r.out);
	done(&r);
	assert_is_image(out);
	free(out);
}

/* --full-verify reads the whole target back, not only the 3 MiB written */
Test(cli_write, full_verify_reads_the_whole_target)
{
	char *out = tu_path(dir, "full.img");
	int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 16 << 20), 0);
	close(fd);
	struct run r = UF(fileconf, "--json", "write", out, img, "--yes");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"bytes_verified\": 3149824") && strstr(r.out, "\"full_verify\": false"), "%s", r.out);
	done(&r);
	r = UF(fileconf, "--json", "write", out, img, "--yes", "--full-verify");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"bytes_verified\": 16777216") && strstr(r.out, "\"full_verify\": true"), "%s", r.out);
	done(&r);
	struct stat st;
	cr_assert_eq(stat(out, &st), 0);
	cr_assert_eq(st.st_size, 16 << 20, "the target keeps its size");
	free(out);
}

Test(cli_write, yes_required_without_a_terminal)
{
	char *out = tu_path(dir, "new.img");
	struct run r = UF(fileconf, "write", out, img);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "stdin is not a terminal: add --yes"), "%s", r.err);
	done(&r);
	cr_assert(access(out, F_OK) < 0 && errno == ENOENT, "the target was created without --yes");

	/* An existing target is left as it was. */
	uint8_t z[8192] = { 0 };
	tu_write_file(out, z, sizeof(z));
	r = UF(fileconf, "write", out, img);
	cr_assert_eq(r.status, 2);
	done(&r);
	size_t len;
	char *got = slurp(out, &len);
	cr_assert_eq(len, sizeof(z));
	cr_assert(memcmp(got, z, sizeof(z)) == 0);
	free(got);
	free(out);
}

/* ---- the confirmation prompt, on a terminal --------------------------------------------------- */

struct pty_run {
	int status;
	char *tty; /* everything the terminal showed: stderr (prompt, progress) and the echo */
	char *out; /* stdout */
};

/* Run `usbforge --config conf write target img` with stdin and stderr on the slave side of a
 * new pty (its controlling terminal), stdout into a file. When the terminal shows "[y/N] ",
 * type answer and Enter; then read until the program closes the terminal and reap it. Bounded:
 * 60 s without output fails the test (poll, no sleeping). */
static struct pty_run write_on_pty(const char *conf, const char *target, const char *answer)
{
	char *bin = tu_path(tu_binary_dir(), "cli/usbforge");
	char *outp = tu_path(dir, "pty-stdout");
	const char *argv[] = { bin, "--config", conf, "write", target, img, NULL };

	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	cr_assert(m >= 0, "posix_openpt: %s", strerror(errno));
	cr_assert_eq(grantpt(m), 0);
	cr_assert_eq(unlockpt(m), 0);
	char *slave = strdup(ptsname(m));
	int outfd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(slave && outfd >= 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		/* only async-signal-safe calls until exec */
		if (setsid() < 0)
			_exit(126);
		int s = open(slave, O_RDWR); /* the first tty a session leader opens is its terminal */
		if (s < 0 || dup2(s, 0) < 0 || dup2(s, 2) < 0 || dup2(outfd, 1) < 0)
			_exit(126);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(outfd);

	size_t len = 0, cap = 65536;
	char *t = malloc(cap);
	cr_assert(t);
	bool answered = false;
	for (;;) {
		struct pollfd p = { .fd = m, .events = POLLIN };
		int k = poll(&p, 1, 60000);
		cr_assert(k >= 0 || errno == EINTR);
		cr_assert(k != 0, "no output from usbforge for 60 s; terminal so far: %.*s", (int)len, t);
		if (k < 0)
			continue;
		if (len + 4096 + 1 > cap) {
			cap *= 2;
			t = realloc(t, cap);
			cr_assert(t);
		}
		ssize_t n = read(m, t + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* EIO: the program closed its side of the terminal */
		len += (size_t)n;
		t[len] = 0;
		if (!answered && strstr(t, "[y/N] ")) {
			char line[16];
			int l = snprintf(line, sizeof(line), "%s\n", answer);
			cr_assert_eq(write(m, line, (size_t)l), l);
			answered = true;
		}
	}
	t[len] = 0;
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	close(m);
	cr_assert(answered, "usbforge never asked (wait status %d); terminal: %s", st, t);
	struct pty_run r = {
		.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
		.tty = t,
		.out = slurp(outp, NULL),
	};
	free(slave);
	free(outp);
	free(bin);
	return r;
}

static void pty_done(struct pty_run *r)
{
	free(r->tty);
	free(r->out);
}

/* The prompt text of confirm() in cli/cmd_write.c for a target described as what. */
static void assert_prompt(const struct pty_run *r, const char *target, const char *what)
{
	char *want = NULL;
	cr_assert(asprintf(&want, "%s: %s\r\nEverything on %s will be overwritten with %s (3.0 MiB). Continue? [y/N] ",
			   target, what, target, img) > 0);
	cr_assert(strstr(r->tty, want), "want the prompt\n%s\ngot\n%s", want, r->tty);
	free(want);
}

Test(cli_write, prompt_on_a_terminal_no_keeps_yes_writes)
{
	/* An existing 8 MiB file with its own bytes. */
	char *target = tu_path(dir, "stick.img");
	size_t tlen = 8 * 1024 * 1024;
	uint8_t *old = malloc(tlen);
	cr_assert(old);
	tu_fill_pattern(old, tlen, 31);
	tu_write_file(target, old, tlen);

	/* "n": exit 1 (a failure, DESIGN.md's CLI exit status; not a usage error), untouched. */
	struct pty_run r = write_on_pty(fileconf, target, "n");
	assert_prompt(&r, target, "regular file of 8.0 MiB");
	cr_assert_eq(r.status, 1, "exit %d; terminal: %s", r.status, r.tty);
	char *want = NULL;
	cr_assert(asprintf(&want, "not confirmed; %s left untouched", target) > 0);
	cr_assert(strstr(r.tty, want), "%s", r.tty);
	free(want);
	cr_assert_not(strstr(r.out, "wrote "), "%s", r.out);
	pty_done(&r);
	size_t len;
	char *got = slurp(target, &len);
	cr_assert_eq(len, tlen);
	cr_assert(memcmp(got, old, tlen) == 0, "the target was modified after \"n\"");
	free(got);

	/* "y": written and verified; the rest of the file past the image keeps its bytes. */
	r = write_on_pty(fileconf, target, "y");
	assert_prompt(&r, target, "regular file of 8.0 MiB");
	cr_assert_eq(r.status, 0, "exit %d; terminal: %s", r.status, r.tty);
	cr_assert(strstr(r.out, "wrote ") && strstr(r.out, "verified in"), "%s", r.out);
	pty_done(&r);
	got = slurp(target, &len);
	cr_assert_eq(len, tlen);
	cr_assert(memcmp(got, data, IMG_SIZE) == 0, "image not on the target");
	size_t pad_end = (IMG_SIZE + 4095) / 4096 * 4096;
	for (size_t i = IMG_SIZE; i < pad_end; i++)
		cr_assert_eq((uint8_t)got[i], 0, "padding byte %zu", i);
	cr_assert(memcmp(got + pad_end, old + pad_end, tlen - pad_end) == 0);
	free(got);
	free(old);
	free(target);
}

Test(cli_write, usage_errors)
{
	struct run r = UF(fileconf, "write", img);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "usage: usbforge write DEVICE SOURCE [--no-verify | --full-verify] [--yes]"), "%s",
		  r.err);
	done(&r);
	r = UF(fileconf, "write", "--no-verify", "--full-verify", "--yes", img, img);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--no-verify and --full-verify exclude each other"), "%s", r.err);
	done(&r);
	r = UF(fileconf, "verify", "--full-verify", img, img);
	cr_assert_eq(r.status, 2, "--full-verify is write's");
	done(&r);
	r = UF(fileconf, "verify", img, img, img);
	cr_assert_eq(r.status, 2);
	done(&r);
	r = UF(fileconf, "probe", img, "--bogus");
	cr_assert_eq(r.status, 2);
	done(&r);
}

Test(cli_write, unreadable_and_too_large_images)
{
	char *bad = tu_path(dir, "bad.img.zst");
	char *out = tu_path(dir, "o.img");
	/* zstd magic, then garbage */
	const uint8_t junk[] = { 0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8 };
	tu_write_file(bad, junk, sizeof(junk));
	struct run r = UF(fileconf, "write", out, bad, "--yes");
	cr_assert_eq(r.status, 1);
	cr_assert(strncmp(r.err, "usbforge: IMAGE_UNREADABLE: ", 28) == 0, "%s", r.err);
	done(&r);
	cr_assert(access(out, F_OK) < 0, "created a target for an unreadable image");

	char *missing = tu_path(dir, "nope.img");
	r = UF(fileconf, "write", out, missing, "--yes");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "IMAGE_UNREADABLE: "), "%s", r.err);
	done(&r);

	/* An existing file keeps its size: one smaller than the image is too small. */
	uint8_t z[4096] = { 0 };
	tu_write_file(out, z, sizeof(z));
	r = UF(fileconf, "write", out, img, "--yes");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "DEVICE_TOO_SMALL: the image needs 3.0 MiB"), "%s", r.err);
	done(&r);
	free(bad);
	free(out);
	free(missing);
}

Test(cli_write, verify_good_and_tampered)
{
	char *out = tu_path(dir, "v.img");
	char *zst = NULL;
	RUN_OK("zstd", "-k", "-q", "-f", img);
	cr_assert(asprintf(&zst, "%s.zst", img) > 0);
	tu_write_file(out, data, IMG_SIZE);

	struct run r = UF(fileconf, "verify", out, zst);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "matches"), "%s", r.out);
	done(&r);

	/* One flipped byte deep inside, past the first chunk. */
	const uint64_t at = 2 * 1024 * 1024 + 4321;
	int fd = open(out, O_WRONLY | O_CLOEXEC);
	cr_assert(fd >= 0);
	uint8_t b = data[at] ^ 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)at), 1);
	close(fd);
	r = UF(fileconf, "verify", out, zst);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err, "usbforge: VERIFY_MISMATCH: first bad byte at offset 2101473\n");
	done(&r);
	r = UF(fileconf, "--json", "verify", out, img);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.out, "\"error_code\": \"VERIFY_MISMATCH\""), "%s", r.out);
	cr_assert(strstr(r.out, "\"bad_offset\": 2101473"), "%s", r.out);
	done(&r);

	/* A target shorter than the image differs where it ends. */
	cr_assert_eq(truncate(out, 1024 * 1024), 0);
	r = UF(fileconf, "verify", out, img);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "VERIFY_MISMATCH: ") && strstr(r.err, "first bad byte at offset 1048576"), "%s", r.err);
	done(&r);

	char *gone = tu_path(dir, "gone.img");
	r = UF(fileconf, "verify", gone, img);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "DEVICE_GONE: "), "%s", r.err);
	done(&r);
	free(gone);
	free(zst);
	free(out);
}

Test(cli_write, probe_genuine_file_and_restores_it)
{
	char *out = tu_path(dir, "p.img");
	tu_write_file(out, data, IMG_SIZE);
	struct run r = UF(fileconf, "probe", out);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, ": genuine, "), "%s", r.out);
	done(&r);
	r = UF(fileconf, "--json", "probe", out);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"verdict\": \"genuine\""), "%s", r.out);
	cr_assert(strstr(r.out, "\"reported_bytes\": 3146962"), "%s", r.out);
	cr_assert(strstr(r.out, "\"usable_bytes\": 3146962"), "%s", r.out);
	done(&r);
	assert_is_image(out);
	free(out);
}

/* A loop device over a file of 16 MiB whose bytes are the pattern (seed 5). */
static char *make_loop(void)
{
	if (!tul_can_loop())
		cr_skip_test("needs root and /dev/loop-control");
	char *back = tu_path(dir, "loop.bin");
	size_t n = 16 * 1024 * 1024;
	uint8_t *p = malloc(n);
	cr_assert(p);
	tu_fill_pattern(p, n, 5);
	tu_write_file(back, p, n);
	free(p);
	tul_attach(back, false, &loop);
	return back;
}

Test(cli_write, mounted_loop_device_is_refused_untouched)
{
	char *back = make_loop();
	char *conf = tu_path(dir, "loop.conf");
	write_conf(conf, loop.path);
	RUN_OK("mkfs.ext4", "-q", "-F", loop.path);
	char *m = tu_path(dir, "mnt");
	cr_assert_eq(mkdir(m, 0755), 0);
	/* read-only: the file system itself writes nothing, so any change would be ours */
	RUN_OK("mount", "-o", "ro", loop.path, m);
	mnt = m;
	size_t len0, len1;
	char *before = slurp(back, &len0);

	struct run r = UF(conf, "write", loop.path, img, "--yes");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "usbforge: DEVICE_UNSAFE: mounted at "), "%s", r.err);
	done(&r);
	r = UF(conf, "probe", loop.path);
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "usbforge: DEVICE_UNSAFE: mounted at "), "%s", r.err);
	done(&r);

	RUN_OK("umount", m);
	mnt = NULL;
	char *after = slurp(back, &len1);
	cr_assert_eq(len0, len1);
	cr_assert(memcmp(before, after, len0) == 0, "the mounted device was modified");
	free(before);
	free(after);
	free(m);
	free(conf);
	free(back);
}

Test(cli_write, loop_device_slot_written_other_refused)
{
	char *back = make_loop();
	char *conf = tu_path(dir, "loop.conf");
	write_conf(conf, loop.path);

	/* Not a configured slot under the file config: refused, untouched. */
	size_t len0, len1;
	char *before = slurp(back, &len0);
	struct run r = UF(fileconf, "write", loop.path, img, "--yes");
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "DEVICE_UNSAFE: ") && strstr(r.err, "not a configured slot"), "%s", r.err);
	done(&r);
	char *after = slurp(back, &len1);
	cr_assert(len0 == len1 && memcmp(before, after, len0) == 0);
	free(after);

	/* Its slot: written, the rest of the device kept, verified again by `verify`. */
	r = UF(conf, "write", loop.path, img, "--yes");
	cr_assert_eq(r.status, 0, "%s", r.err);
	done(&r);
	after = slurp(back, &len1);
	cr_assert_eq(len1, len0);
	cr_assert(memcmp(after, data, IMG_SIZE) == 0, "image not on the loop device");
	/* the last block, padded to the loop's 512-byte logical blocks, is zeros; past it, the
	 * old bytes */
	size_t pad_end = (IMG_SIZE + 511) / 512 * 512;
	for (size_t i = IMG_SIZE; i < pad_end; i++)
		cr_assert_eq(after[i], 0, "padding byte %zu", i);
	cr_assert(memcmp(after + pad_end, before + pad_end, len0 - pad_end) == 0);
	r = UF(conf, "verify", loop.path, img);
	cr_assert_eq(r.status, 0, "%s", r.err);
	done(&r);
	r = UF(conf, "probe", loop.path);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "genuine, 16.0 MiB reported, 16.0 MiB usable"), "%s", r.out);
	done(&r);
	char *again = slurp(back, &len1);
	cr_assert(memcmp(again, after, len0) == 0, "the probe did not restore the device");
	free(again);
	free(before);
	free(after);
	free(conf);
	free(back);
}

/* The prompt for a block device (a loop device named as the static slot): its size from sysfs;
 * "n" leaves every byte of it as it was. */
Test(cli_write, prompt_names_a_block_device_and_its_size)
{
	char *back = make_loop();
	char *conf = tu_path(dir, "loop.conf");
	write_conf(conf, loop.path);
	size_t len0, len1;
	char *before = slurp(back, &len0);

	struct pty_run r = write_on_pty(conf, loop.path, "n");
	assert_prompt(&r, loop.path, "16.0 MiB block device");
	cr_assert_eq(r.status, 1, "exit %d; terminal: %s", r.status, r.tty);
	cr_assert(strstr(r.tty, "left untouched"), "%s", r.tty);
	pty_done(&r);
	char *after = slurp(back, &len1);
	cr_assert(len0 == len1 && memcmp(before, after, len0) == 0, "the loop device was modified after \"n\"");
	free(after);
	free(before);
	free(conf);
	free(back);
}

/* ---- what is not a regular file, or not free, is refused with its reason ------------------------ */

static double mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* usbforge under `timeout 10` (a hang is exit 124, not a hung test), and how long it took. */
static struct run uf_timed(const char *conf, const char *const *args, double *ret_secs)
{
	char *bin = tu_path(tu_binary_dir(), "cli/usbforge");
	const char *argv[20] = { "timeout", "10", bin, "--config", conf };
	int n = 5;
	for (int i = 0; args[i]; i++) {
		cr_assert(n < 19);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	double t0 = mono_s();
	struct run r = spawn(argv);
	*ret_secs = mono_s() - t0;
	free(bin);
	return r;
}
#define UF_TIMED(conf, secs, ...) uf_timed(conf, (const char *const[]){ __VA_ARGS__, NULL }, secs)

static void assert_err(struct run *r, int status, const char *want)
{
	cr_assert_eq(r->status, status, "exit %d: %s", r->status, r->err);
	cr_assert_str_eq(r->err, want);
	done(r);
}

/* A FIFO, a directory or a device as SOURCE of write or verify is refused at once (no open
 * that waits for a writer), naming the path and its kind; no target is created. */
Test(cli_write, source_that_is_not_a_regular_file_is_refused_at_once)
{
	char *fifo = tu_path(dir, "src.fifo");
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	char *out = tu_path(dir, "never.img");
	char *want = NULL;
	double secs;

	struct run r = UF_TIMED(fileconf, &secs, "write", out, fifo, "--yes");
	cr_assert(asprintf(&want, "usbforge: IMAGE_UNREADABLE: %s is a FIFO, not an image file\n", fifo) > 0);
	assert_err(&r, 1, want);
	cr_assert_lt(secs, 1.0, "took %.2f s", secs);
	r = UF_TIMED(fileconf, &secs, "verify", img, fifo);
	assert_err(&r, 1, want);
	cr_assert_lt(secs, 1.0, "took %.2f s", secs);
	free(want);

	r = UF_TIMED(fileconf, &secs, "write", out, dir, "--yes");
	cr_assert(asprintf(&want, "usbforge: IMAGE_UNREADABLE: %s is a directory, not an image file\n", dir) > 0);
	assert_err(&r, 1, want);
	free(want);
	r = UF_TIMED(fileconf, &secs, "write", out, "/dev/zero", "--yes");
	assert_err(&r, 1, "usbforge: IMAGE_UNREADABLE: /dev/zero is a character device, not an image file\n");
	cr_assert(access(out, F_OK) < 0 && errno == ENOENT, "a target was created");
	free(out);
	free(fifo);
}

/* An empty image is refused before anything is created or written. */
Test(cli_write, empty_source_is_refused)
{
	char *empty = tu_path(dir, "empty.img");
	tu_write_file(empty, "", 0);
	char *out = tu_path(dir, "never.img");
	char *want = NULL;
	double secs;
	struct run r = UF_TIMED(fileconf, &secs, "write", out, empty, "--yes");
	cr_assert(asprintf(&want, "usbforge: IMAGE_UNREADABLE: %s is empty (0 bytes): nothing to write\n", empty) > 0);
	assert_err(&r, 1, want);
	free(want);
	cr_assert(access(out, F_OK) < 0 && errno == ENOENT, "a target was created");
	free(out);
	free(empty);
}

/* DEVICE of another kind than a regular file or a block device: refused at once, naming it. */
Test(cli_write, device_that_is_a_fifo_or_char_device_is_named)
{
	char *fifo = tu_path(dir, "dev.fifo");
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	char *want = NULL;
	double secs;
	struct run r = UF_TIMED(fileconf, &secs, "verify", fifo, img);
	cr_assert(asprintf(&want, "usbforge: DEVICE_UNSAFE: %s is a FIFO, not a block device or regular file\n", fifo) >
		  0);
	assert_err(&r, 1, want);
	cr_assert_lt(secs, 1.0, "took %.2f s", secs);
	r = UF_TIMED(fileconf, &secs, "write", fifo, img, "--yes");
	assert_err(&r, 1, want);
	free(want);
	r = UF_TIMED(fileconf, &secs, "probe", "/dev/null");
	assert_err(&r, 1,
		   "usbforge: DEVICE_UNSAFE: /dev/null is a character device, not a block device or regular file\n");
	free(fifo);
}

/* `usbforge probe` on an empty file says what is wrong with it (before: PROCESSING_FAILED
 * "Invalid argument"). */
Test(cli_write, probe_of_an_empty_file_is_too_small)
{
	char *z = tu_path(dir, "zero.img");
	tu_write_file(z, "", 0);
	char *want = NULL;
	double secs;
	struct run r = UF_TIMED(fileconf, &secs, "probe", z);
	cr_assert(
		asprintf(&want,
			 "usbforge: DEVICE_TOO_SMALL: %s holds 0 bytes, less than one 4096-byte block: nothing to probe\n",
			 z) > 0);
	assert_err(&r, 1, want);
	free(want);
	free(z);
}

/* A regular file that is being written (another usbforge holds its flock) is refused as in use,
 * naming the holder, and left untouched. */
Test(cli_write, file_being_written_is_in_use)
{
	char *target = tu_path(dir, "busy.img");
	size_t tlen = 4 << 20;
	uint8_t *old = malloc(tlen);
	cr_assert(old);
	tu_fill_pattern(old, tlen, 41);
	tu_write_file(target, old, tlen);
	int fd = open(target, O_RDWR | O_CLOEXEC);
	cr_assert(fd >= 0);
	cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	char comm[64] = "";
	FILE *f = fopen("/proc/self/comm", "re");
	cr_assert(f && fgets(comm, sizeof(comm), f));
	fclose(f);
	comm[strcspn(comm, "\n")] = 0;

	char *want = NULL;
	double secs;
	cr_assert(asprintf(&want, "usbforge: DEVICE_UNSAFE: %s: in use: locked by %s (pid %d)\n", target, comm,
			   (int)getpid()) > 0);
	struct run r = UF_TIMED(fileconf, &secs, "write", target, img, "--yes");
	assert_err(&r, 1, want);
	r = UF_TIMED(fileconf, &secs, "probe", target);
	assert_err(&r, 1, want);
	free(want);
	close(fd);
	size_t len;
	char *got = slurp(target, &len);
	cr_assert(len == tlen && memcmp(got, old, tlen) == 0, "the locked file was modified");
	free(got);
	/* free again: written */
	r = UF(fileconf, "write", target, img, "--yes");
	cr_assert_eq(r.status, 0, "%s", r.err);
	done(&r);
	free(old);
	free(target);
}

/* An immutable target (chattr +i: EPERM at open) is a read-only stick, said so. */
Test(cli_write, immutable_target_is_read_only)
{
	char *target = tu_path(dir, "imm.img");
	uint8_t z[8192] = { 0 };
	tu_write_file(target, z, sizeof(z));
	/* ext4 and tmpfs (Linux >= 6.0) both keep the flag: a skip would hide the finding */
	cr_assert_eq(tu_set_immutable(target, true), 0, "chattr +i failed");
	immutable = strdup(target);
	char *want = NULL;
	double secs;
	cr_assert(
		asprintf(&want,
			 "usbforge: DEVICE_READ_ONLY: read-only: cannot open %s for writing: Operation not permitted\n",
			 target) > 0);
	struct run r = UF_TIMED(fileconf, &secs, "write", target, img, "--yes");
	assert_err(&r, 1, want);
	free(want);
	cr_assert_eq(tu_set_immutable(target, false), 0);
	free(target);
}

/* The file behind a loop device is refused by `usbforge write` like the loop device itself would
 * be, naming the loop device and whether it is mounted; not a byte of it changes. */
Test(cli_write, file_backing_a_loop_device_is_refused_untouched)
{
	char *back = make_loop();
	size_t len0, len1;
	char *before = slurp(back, &len0);
	char *want = NULL;
	double secs;
	struct run r = UF_TIMED(fileconf, &secs, "write", back, img, "--yes");
	cr_assert(asprintf(&want, "usbforge: DEVICE_UNSAFE: %s: backs loop device %s (not mounted)\n", back,
			   loop.path) > 0);
	assert_err(&r, 1, want);
	free(want);

	RUN_OK("mkfs.ext4", "-q", "-F", loop.path);
	free(before);
	before = slurp(back, &len0);
	char *m = tu_path(dir, "mnt");
	cr_assert_eq(mkdir(m, 0755), 0);
	RUN_OK("mount", "-o", "ro", loop.path, m);
	mnt = m;
	r = UF_TIMED(fileconf, &secs, "write", back, img, "--yes");
	cr_assert(asprintf(&want, "usbforge: DEVICE_UNSAFE: %s: backs loop device %s (mounted at %s)\n", back,
			   loop.path, m) > 0);
	assert_err(&r, 1, want);
	free(want);
	r = UF_TIMED(fileconf, &secs, "probe", back);
	cr_assert_eq(r.status, 1, "%s", r.err);
	done(&r);
	RUN_OK("umount", m);
	mnt = NULL;
	char *after = slurp(back, &len1);
	cr_assert(len0 == len1 && memcmp(before, after, len0) == 0, "the loop device's file was modified");
	free(after);
	free(before);
	free(m);
	free(back);
}
