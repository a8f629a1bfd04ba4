/* `usbforge write DEVICE SOURCE`, `usbforge verify DEVICE SOURCE` and `usbforge probe DEVICE`:
 * the one-off commands that run the daemon's writing path (block sources, the pipelined
 * O_DIRECT writer, the verifier, the fake-capacity probe) on one target with no database
 * (DESIGN.md "The CLI", "Devices and safety"). This file owns what sits around that code for a
 * person at a terminal or a script: the safety check and the confirmation prompt, creating a
 * regular-file target, the progress line, the mapping of errno results to DESIGN.md error codes
 * (telling a vanished device apart from an I/O error), and the human and JSON reports. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "image/blksrc.h"
#include "blkio/probe.h"
#include "stages/stage.h"
#include "blkio/verify.h"
#include "blkio/writer.h"
#include "usb/discover.h"
#include "usb/safety.h"
#include "usb/reset.h"
#include "util/macro.h"
#include "util/monotime.h"
#include "util/openfile.h"
#include "util/size.h"
#include "util/ufcode.h"
#include "util/message.h"

#define RESET_TIMEOUT_MS 30000
#define PROGRESS_EVERY_S 0.25

/* Set by SIGINT/SIGTERM: the writer, verifier and probe stop at their next buffer. */
static atomic_bool cancel_flag;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&cancel_flag, true);
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* One invocation's target and report state. */
struct job {
	struct cli *c;
	const char *cmd; /* "write", "verify", "probe" */
	const char *usage;
	const char *device;
	const char *source; /* NULL for probe */
	struct dev *dev;
	struct usbreset *usbreset;
	bool tty;	   /* progress line on stderr */
	double t_phase;	   /* start of the current phase */
	double t_last;	   /* last progress line */
	const char *phase; /* "writing", "verifying" */
	bool full_verify;  /* write --full-verify: read back the whole device */
};

static void job_done(struct job *j)
{
	j->dev = writer_dev_free(j->dev);
	j->usbreset = usbreset_free(j->usbreset);
}

/* Print "usbforge: CODE: message" (and, with --json, a JSON document naming the failure) and
 * return CLI_EXIT_FAIL. bad_offset UINT64_MAX: none. */
static int job_fail(struct job *j, enum uf_code code, uint64_t bad_offset, const char *fmt, ...) _printf_(4, 5);
static int job_fail(struct job *j, enum uf_code code, uint64_t bad_offset, const char *fmt, ...)
{
	va_list ap;
	_cleanup_free_ char *msg = NULL;

	va_start(ap, fmt);
	msg = str_vprintf(fmt, ap);
	va_end(ap);
	if (j->tty && j->phase)
		fputc('\n', stderr); /* end the progress line */
	j->phase = NULL;
	cli_error(CLI_EXIT_FAIL, "%s: %s", uf_code_name(code), msg ? msg : "out of memory");
	if (j->c->json) {
		json_t *doc = json_pack("{s:s, s:s?, s:s, s:s?, s:o}", "device", j->device, "source", j->source,
					"error_code", uf_code_name(code), "error", msg, "bad_offset",
					bad_offset == UINT64_MAX ? json_null() : json_integer((json_int_t)bad_offset));
		(void)cli_print_json(doc); /* the failure is reported already; a NULL doc adds nothing */
	}
	return CLI_EXIT_FAIL;
}

/* A device errno at offset off during what ("write", "read-back", "probe") → code + exit. */
static int job_fail_io(struct job *j, int r, uint64_t off, const char *what)
{
	enum uf_code c = dev_error_code(j->dev, r);

	switch (c) {
	case UFC_CANCELLED:
		return job_fail(j, c, off, "%s of %s interrupted", what, j->device);
	case UFC_DEVICE_GONE:
		return job_fail(j, c, off, "%s disappeared during the %s (at offset %llu)", j->device, what,
				(unsigned long long)off);
	case UFC_DEVICE_READ_ONLY:
		return job_fail(j, c, off, "read-only: %s refused the %s at offset %llu: %s", j->device, what,
				(unsigned long long)off, strerror(-r));
	case UFC_WRITE_IO:
		if (r == -ETIMEDOUT)
			return job_fail(j, c, off, "%s: %s did not return in time at offset %llu", j->device, what,
					(unsigned long long)off);
		return job_fail(j, c, off, "%s: %s failed (%s) at offset %llu", j->device, what, strerror(-r),
				(unsigned long long)off);
	default:
		return job_fail(j, c, off, "%s: %s failed: %s", j->device, what, strerror(-r));
	}
}

static void progress(void *ud, uint64_t done, uint64_t total)
{
	struct job *j = ud;
	double now = mono_s();
	char a[32], b[32];

	if (!j->tty || !j->phase)
		return;
	if (now - j->t_last < PROGRESS_EVERY_S && done < total)
		return;
	j->t_last = now;
	double el = now - j->t_phase;
	double rate = el > 0 ? (double)done / el : 0;
	double pct = total ? 100.0 * (double)done / (double)total : 100.0;
	fprintf(stderr, "\r%-9s %5.1f%%  %s / %s  %.1f MB/s", j->phase, pct, format_size(done, a, sizeof(a)),
		format_size(total, b, sizeof(b)), rate / 1e6);
	if (rate > 0 && done < total) {
		unsigned long eta = (unsigned long)((double)(total - done) / rate + 0.5);
		fprintf(stderr, "  eta %lu:%02lu", eta / 60, eta % 60);
	}
	fputs("\033[K", stderr);
	fflush(stderr);
}

static void phase_begin(struct job *j, const char *phase)
{
	j->phase = phase;
	j->t_phase = j->t_last = mono_s();
}

static void phase_end(struct job *j)
{
	if (j->tty && j->phase)
		fputc('\n', stderr);
	j->phase = NULL;
}

/* SOURCE must be a regular file that holds something: a FIFO, a directory or a device is
 * refused at once, naming its kind (opened O_NONBLOCK, then fstat: nothing here can block),
 * and so is an empty file. */
static int check_source(struct job *j)
{
	struct stat st;
	int fd = open_regular(j->source, &st);
	if (fd == -EINVAL || fd == -EISDIR || fd == -ENXIO) {
		struct stat ls;
		return job_fail(j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s is %s, not an image file", j->source,
				stat(j->source, &ls) == 0 ? file_kind(ls.st_mode) : "not a regular file");
	}
	if (fd < 0)
		return job_fail(j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s: %s", j->source, strerror(-fd));
	close(fd);
	if (st.st_size == 0)
		return job_fail(j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s is empty (0 bytes): nothing to %s", j->source,
				strcmp(j->cmd, "write") == 0 ? "write" : "compare");
	return 0;
}

static int open_source(struct job *j, struct blksrc **ret)
{
	_cleanup_free_ char *err = NULL;
	int r = check_source(j);
	if (r)
		return r;
	r = blksrc_open_image(j->source, ret, &err);
	if (r < 0 && err)
		return job_fail(j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s", err);
	if (r < 0)
		return job_fail(j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s: %s", j->source, strerror(-r));
	return 0;
}

/* Static mode names its targets: a block device that no slot names is not one of them, even
 * when it passes the mount/root/holder rules (usb_target_check judges only those there). */
static bool static_slot_ok(const struct uf_config *cfg, const char *path)
{
	struct stat st, ss;

	if (cfg->usb.mode != USB_MODE_STATIC || stat(path, &st) < 0 || !S_ISBLK(st.st_mode))
		return true;
	for (size_t i = 0; i < cfg->usb.n_slots; i++) {
		const char *p = cfg->usb.slots[i].path;
		if (p && stat(p, &ss) == 0 && S_ISBLK(ss.st_mode) && ss.st_rdev == st.st_rdev)
			return true;
	}
	return false;
}

/* The safety rule of DESIGN.md: a regular file always, a block device only when eligible
 * under the mode in force. *ret_missing tells a target that does not exist (allowed only
 * when allow_missing: write creates it). */
static int check_target(struct job *j, bool allow_missing, bool *ret_missing)
{
	_cleanup_free_ char *reason = NULL;
	int r = usb_target_check(&j->c->cfg, j->device, &reason);

	*ret_missing = false;
	if (r == -ENOENT && allow_missing) {
		*ret_missing = true;
		return 0;
	}
	if (r == -ENOENT)
		return job_fail(j, UFC_DEVICE_GONE, UINT64_MAX, "%s: %s", j->device,
				reason ? reason : strerror(ENOENT));
	if (r == -EPERM)
		return job_fail(j, UFC_DEVICE_UNSAFE, UINT64_MAX, "%s", reason ? reason : j->device);
	if (r < 0)
		return job_fail(j, UFC_DEVICE_UNSAFE, UINT64_MAX, "%s: cannot check the target: %s", j->device,
				reason ? reason : strerror(-r));
	if (!static_slot_ok(&j->c->cfg, j->device))
		return job_fail(j, UFC_DEVICE_UNSAFE, UINT64_MAX,
				"%s is a block device that is not a configured slot (static mode writes only the "
				"block devices named in usb.slots)",
				j->device);
	return 0;
}

/* Show what will be overwritten and ask. Returns 0 to go on, or an exit status. */
static int confirm(struct job *j, bool yes, bool missing, uint64_t image_size)
{
	char a[32], b[32];
	struct stat st;

	if (yes)
		return 0;
	if (!isatty(STDIN_FILENO))
		return cli_usage_error(j->cmd, j->usage, "stdin is not a terminal: add --yes to confirm overwriting %s",
				       j->device);
	if (missing) {
		fprintf(stderr, "%s does not exist: it will be created as a file of %s.\n", j->device,
			format_size(image_size, a, sizeof(a)));
	} else if (stat(j->device, &st) == 0 && S_ISBLK(st.st_mode)) {
		struct usb_disk_facts f;
		if (usb_disk_facts_from_devnum(NULL, st.st_rdev, &f) == 0) {
			fprintf(stderr, "%s: %s block device%s%s%s%s%s%s%s\n", j->device,
				format_size(f.size_bytes, a, sizeof(a)), f.vendor || f.model ? ", " : "",
				f.vendor ? f.vendor : "", f.vendor && f.model ? " " : "", f.model ? f.model : "",
				f.serial ? " (serial " : "", f.serial ? f.serial : "", f.serial ? ")" : "");
			usb_disk_facts_done(&f);
		} else {
			fprintf(stderr, "%s: block device\n", j->device);
		}
	} else if (stat(j->device, &st) == 0) {
		fprintf(stderr, "%s: regular file of %s\n", j->device, format_size((uint64_t)st.st_size, a, sizeof(a)));
	}
	fprintf(stderr, "Everything on %s will be overwritten with %s (%s). Continue? [y/N] ", j->device, j->source,
		format_size(image_size, b, sizeof(b)));
	fflush(stderr);
	_cleanup_free_ char *line = NULL;
	size_t n = 0;
	if (getline(&line, &n, stdin) < 0 || (strcmp(line, "y\n") != 0 && strcmp(line, "Y\n") != 0 &&
					      strcmp(line, "yes\n") != 0 && strcmp(line, "YES\n") != 0))
		return cli_error(CLI_EXIT_FAIL, "not confirmed; %s left untouched", j->device);
	return 0;
}

/* Create a regular file of size bytes at path (O_EXCL: never replaces anything). */
static int create_target(struct job *j, uint64_t size)
{
	_cleanup_close_ int fd = open(j->device, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return job_fail(j, UFC_WRITE_IO, UINT64_MAX, "cannot create %s: %s", j->device, strerror(errno));
	return 0;
}

/* Open the target through the device table. In udev
 * mode with reset_before_verify, install the USB reset hook on a block device (a failure
 * there only costs the stick-cache reset: O_DIRECT and dropped buffers remain). */
static int open_target(struct job *j, unsigned flags, bool want_reset)
{
	int r = dev_open(j->device, flags, &j->dev);
	if (r < 0) {
		if (r == -EAGAIN) {
			_cleanup_free_ char *who = NULL;
			struct stat st;
			if (stat(j->device, &st) < 0 || usb_file_lock_holder(NULL, st.st_dev, st.st_ino, &who) <= 0)
				who = NULL;
			return job_fail(j, UFC_DEVICE_UNSAFE, UINT64_MAX, "%s is in use: locked by %s", j->device,
					who ? who : "another process");
		}
		enum uf_code c = dev_open_error_code(r, flags);
		if (r == -EBUSY)
			return job_fail(j, c, UINT64_MAX,
					"%s is in use (opened exclusively by another process, or mounted)", j->device);
		if (r == -ENOTBLK)
			return job_fail(j, c, UINT64_MAX, "%s is not a block device or regular file (any more)",
					j->device);
		if (c == UFC_DEVICE_READ_ONLY)
			return job_fail(j, c, UINT64_MAX, "read-only: cannot open %s for writing: %s", j->device,
					strerror(-r));
		if (c == UFC_DEVICE_GONE)
			return job_fail(j, c, UINT64_MAX, "%s: %s", j->device, strerror(-r));
		return job_fail(j, c, UINT64_MAX, "cannot open %s: %s", j->device, strerror(-r));
	}
	/* Judged again on the descriptor (st_dev, st_ino: not the name, which may have been
	 * swapped since the check): a regular file must not back a loop device. */
	if (!j->dev->is_block) {
		_cleanup_free_ char *reason = NULL;
		struct stat st;
		if (dev_stat(j->dev, &st) == 0 && usb_file_backs_loop(NULL, st.st_dev, st.st_ino, &reason) == -EPERM)
			return job_fail(j, UFC_DEVICE_UNSAFE, UINT64_MAX, "%s: %s", j->device, reason);
	}
	if (want_reset && j->c->cfg.usb.mode == USB_MODE_UDEV && j->dev->is_block) {
		r = usbreset_install(j->dev, RESET_TIMEOUT_MS, &j->usbreset);
		if (r < 0)
			fprintf(stderr,
				"usbforge: warning: no USB reset before verification (%s); relying on O_DIRECT "
				"and dropped caches\n",
				strerror(-r));
	}
	return 0;
}

static int reopen_source(void *ud, struct blksrc **ret)
{
	const struct job *j = ud;
	return blksrc_open_image(j->source, ret, NULL);
}

static void verify_opts_from(const struct write_opts *wo, struct job *j, struct verify_opts *ret)
{
	*ret = (struct verify_opts){
		.full = wo->verify_full,
		.buffer_size = wo->buffer_size,
		.queue_depth = wo->queue_depth,
		.stall_timeout = wo->stall_timeout,
		.reopen = reopen_source,
		.reopen_userdata = j,
		.progress = progress,
		.progress_userdata = j,
	};
}

/* Verification result → exit status (0 on success). */
static int report_verify_error(struct job *j, int r, const struct verify_result *vr)
{
	if (r == -EBADMSG)
		return job_fail(j, UFC_VERIFY_MISMATCH, vr->bad_offset, "first bad byte at offset %llu%s",
				(unsigned long long)vr->bad_offset, vr->exact ? "" : " (start of the bad chunk)");
	if (r == -EIO && !dev_gone(j->dev, r))
		return job_fail(j, UFC_VERIFY_MISMATCH, vr->bad_offset, "read error at offset %llu",
				(unsigned long long)vr->bad_offset);
	return job_fail_io(j, r, vr->bad_offset, "read-back");
}

static int parse_common(struct job *j, int argc, char **argv, int nargs, bool *yes, bool *no_verify)
{
	static const struct option opts[] = {
		{ "yes", no_argument, NULL, 'y' },	   { "no-verify", no_argument, NULL, 'n' },
		{ "full-verify", no_argument, NULL, 'F' }, { "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },	   {},
	};
	int o;

	while ((o = getopt_long(argc, argv, "yjh", opts, NULL)) != -1) {
		switch (o) {
		case 'y':
			if (!yes)
				return cli_usage_error(j->cmd, j->usage, "unknown option '--yes'");
			*yes = true;
			break;
		case 'n':
			if (!no_verify)
				return cli_usage_error(j->cmd, j->usage, "unknown option '--no-verify'");
			*no_verify = true;
			break;
		case 'F':
			if (!no_verify) /* write only */
				return cli_usage_error(j->cmd, j->usage, "unknown option '--full-verify'");
			j->full_verify = true;
			break;
		case 'j':
			j->c->json = true;
			break;
		case 'h':
			printf("usage: usbforge %s %s\n", j->cmd, j->usage);
			return -1;
		default:
			return cli_usage_error(j->cmd, j->usage, "bad option");
		}
	}
	if (argc - optind != nargs)
		return cli_usage_error(j->cmd, j->usage, "expected %d argument%s, got %d", nargs, nargs == 1 ? "" : "s",
				       argc - optind);
	j->device = argv[optind];
	j->source = nargs > 1 ? argv[optind + 1] : NULL;
	if (!*j->device || (j->source && !*j->source))
		return cli_usage_error(j->cmd, j->usage, "empty argument");
	return 0;
}

int cmd_write(struct cli *c, int argc, char **argv)
{
	struct job j = { .c = c, .cmd = "write", .usage = "DEVICE SOURCE [--no-verify | --full-verify] [--yes]" };
	bool yes = false, no_verify = false, missing = false;
	struct blksrc *src = NULL;
	struct writer *w = NULL;
	struct write_opts wo;
	struct verify_result vr = { 0 };
	uint64_t image_size = 0, orig_size = 0;
	double t0, t_write = 0, t_verify = 0;
	bool verified = false;
	int r;

	r = parse_common(&j, argc, argv, 2, &yes, &no_verify);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	r = cli_load_config(c);
	if (r)
		return r;
	j.tty = isatty(STDERR_FILENO) && !c->json;
	write_opts_from_config(&c->cfg, &wo);
	if (no_verify && j.full_verify)
		return cli_usage_error(j.cmd, j.usage, "--no-verify and --full-verify exclude each other");
	if (no_verify)
		wo.verify = false;
	if (j.full_verify)
		wo.verify_full = true;

	r = open_source(&j, &src);
	if (r)
		goto out;
	image_size = src->size;
	if (image_size == 0) {
		r = job_fail(&j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s: the image is empty", j.source);
		goto out;
	}
	r = check_target(&j, true, &missing);
	if (r)
		goto out;
	r = confirm(&j, yes, missing, image_size);
	if (r)
		goto out;
	if (missing) {
		r = create_target(&j, image_size);
		if (r)
			goto out;
	}
	r = open_target(&j, DEV_OPEN_WRITE, wo.verify && wo.reset_before_verify);
	if (r)
		goto out;
	orig_size = dev_size(j.dev);
	install_signals();

	t0 = mono_s();
	r = writer_new(j.dev, src, &wo, NULL, &w);
	if (r == -EFBIG) {
		char a[32], b[32];
		r = job_fail(&j, UFC_DEVICE_TOO_SMALL, dev_size(j.dev), "the image needs %s, %s holds %s",
			     format_size(src->size, a, sizeof(a)), j.device,
			     format_size(dev_size(j.dev), b, sizeof(b)));
		goto out;
	}
	if (r < 0) {
		r = job_fail(&j, UFC_PROCESSING_FAILED, UINT64_MAX, "cannot set up the writer: %s", strerror(-r));
		goto out;
	}
	struct writer_cbs cbs = { .userdata = &j, .progress = progress };
	phase_begin(&j, "writing");
	r = writer_run(w, &cancel_flag, &cbs);
	if (r < 0) {
		const struct writer_stats *st = writer_stats(w);
		if (st->image_error)
			r = job_fail(&j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s", st->error ? st->error : j.source);
		else
			r = job_fail_io(&j, r, st->bad_offset, "write");
		goto out;
	}
	phase_end(&j);
	t_write = mono_s() - t0;

	if (wo.verify) {
		double tv = mono_s();
		struct verify_opts vo;
		if (wo.reset_before_verify) {
			r = dev_reset(j.dev);
			if (r < 0) {
				r = job_fail_io(&j, r, 0, "reset before verification");
				goto out;
			}
		}
		verify_opts_from(&wo, &j, &vo);
		phase_begin(&j, "verifying");
		r = writer_verify(w, j.dev, &vo, &cancel_flag, &vr);
		if (r < 0) {
			r = report_verify_error(&j, r, &vr);
			goto out;
		}
		phase_end(&j);
		verified = true;
		t_verify = mono_s() - tv;
	}

	/* A target file deleted (or renamed over) meanwhile holds the image in an inode no one
	 * will ever read again: that is not a write. */
	if (dev_unlinked(j.dev)) {
		r = job_fail(&j, UFC_DEVICE_GONE, UINT64_MAX, "%s was deleted during the write: the image is not on it",
			     j.device);
		goto out;
	}

	/* The writer pads the last block: give a regular file its size back. */
	if (!j.dev->is_block) {
		struct stat st;
		if (stat(j.device, &st) == 0 && (uint64_t)st.st_size > orig_size &&
		    truncate(j.device, (off_t)orig_size) < 0) {
			r = job_fail(&j, UFC_WRITE_IO, orig_size, "cannot trim %s to %llu bytes: %s", j.device,
				     (unsigned long long)orig_size, strerror(errno));
			goto out;
		}
	}

	double secs = mono_s() - t0;
	const struct writer_stats *st = writer_stats(w);
	double rate = secs > 0 ? (double)src->mapped / secs : 0;
	r = CLI_EXIT_OK;
	if (c->json) {
		r = cli_print_json(json_pack("{s:s, s:s, s:I, s:b, s:I, s:b, s:f, s:f}", "device", j.device, "source",
					     j.source, "bytes_written", (json_int_t)st->bytes_written, "verified",
					     (int)verified, "bytes_verified", (json_int_t)vr.bytes_read, "full_verify",
					     (int)(verified && wo.verify_full), "seconds", secs, "rate_bytes_per_s",
					     rate));
	} else {
		char a[32];
		printf("wrote %s to %s in %.2f s (%.1f MB/s)", format_size(st->bytes_written, a, sizeof(a)), j.device,
		       t_write, t_write > 0 ? (double)st->bytes_written / t_write / 1e6 : 0.0);
		if (verified)
			printf(", verified in %.2f s (%.1f MB/s)", t_verify,
			       t_verify > 0 ? (double)vr.bytes_read / t_verify / 1e6 : 0.0);
		else
			printf(", not verified");
		printf("; total %.2f s, %.1f MB/s\n", secs, rate / 1e6);
	}
out:
	w = writer_free(w);
	job_done(&j);
	blksrc_free(src);
	return r;
}

int cmd_verify(struct cli *c, int argc, char **argv)
{
	struct job j = { .c = c, .cmd = "verify", .usage = "DEVICE SOURCE" };
	struct blksrc *src = NULL;
	struct write_opts wo;
	struct verify_opts vo;
	struct verify_result vr = { 0 };
	bool missing;
	int r;

	r = parse_common(&j, argc, argv, 2, NULL, NULL);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	r = cli_load_config(c);
	if (r)
		return r;
	j.tty = isatty(STDERR_FILENO) && !c->json;
	write_opts_from_config(&c->cfg, &wo);

	r = open_source(&j, &src);
	if (r)
		goto out;
	/* Reading is harmless, but the same rule keeps the CLI predictable: a target the kiosk
	 * would not write is not one it reads back either. */
	r = check_target(&j, false, &missing);
	if (r)
		goto out;
	r = open_target(&j, 0, wo.reset_before_verify);
	if (r)
		goto out;
	if (src->size > dev_size(j.dev)) {
		char a[32], b[32];
		r = job_fail(&j, UFC_VERIFY_MISMATCH, dev_size(j.dev),
			     "%s holds %s, the image %s: first bad byte at offset %llu", j.device,
			     format_size(dev_size(j.dev), a, sizeof(a)), format_size(src->size, b, sizeof(b)),
			     (unsigned long long)dev_size(j.dev));
		goto out;
	}
	install_signals();
	double t0 = mono_s();
	if (wo.reset_before_verify) {
		r = dev_reset(j.dev);
		if (r < 0) {
			r = job_fail_io(&j, r, 0, "reset before verification");
			goto out;
		}
	}
	verify_opts_from(&wo, &j, &vo);
	vo.reopen = NULL; /* verify_source names the exact byte itself */
	phase_begin(&j, "verifying");
	r = verify_source(j.dev, src, &vo, &cancel_flag, &vr);
	if (r < 0) {
		if (vr.bad_offset == UINT64_MAX && r != -ECANCELED && !dev_errno_is_gone(r))
			r = job_fail(&j, UFC_IMAGE_UNREADABLE, UINT64_MAX, "%s: %s", j.source,
				     blksrc_error(src) ? blksrc_error(src) : strerror(-r));
		else
			r = report_verify_error(&j, r, &vr);
		goto out;
	}
	phase_end(&j);
	double secs = mono_s() - t0;
	double rate = secs > 0 ? (double)vr.bytes_read / secs : 0;
	r = CLI_EXIT_OK;
	if (c->json) {
		r = cli_print_json(json_pack("{s:s, s:s, s:I, s:b, s:f, s:f}", "device", j.device, "source", j.source,
					     "bytes_read", (json_int_t)vr.bytes_read, "verified", 1, "seconds", secs,
					     "rate_bytes_per_s", rate));
	} else {
		char a[32];
		printf("%s matches %s: %s read in %.2f s (%.1f MB/s)\n", j.device, j.source,
		       format_size(vr.bytes_read, a, sizeof(a)), secs, rate / 1e6);
	}
out:
	job_done(&j);
	blksrc_free(src);
	return r;
}

int cmd_probe(struct cli *c, int argc, char **argv)
{
	struct job j = { .c = c, .cmd = "probe", .usage = "DEVICE" };
	struct probe_result pr;
	char a[32], b[32];
	bool missing;
	int r;

	r = parse_common(&j, argc, argv, 1, NULL, NULL);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	r = cli_load_config(c);
	if (r)
		return r;
	r = check_target(&j, false, &missing);
	if (r)
		goto out;
	r = open_target(&j, DEV_OPEN_WRITE, true);
	if (r)
		goto out;
	if (dev_size(j.dev) < 4096) {
		r = job_fail(&j, UFC_DEVICE_TOO_SMALL, UINT64_MAX,
			     "%s holds %llu bytes, less than one 4096-byte block: nothing to probe", j.device,
			     (unsigned long long)dev_size(j.dev));
		goto out;
	}
	install_signals();
	double t0 = mono_s();
	r = probe_run(j.dev, &cancel_flag, &pr);
	if (r < 0) {
		r = job_fail_io(&j, r, 0, "probe");
		goto out;
	}
	double secs = mono_s() - t0;
	r = CLI_EXIT_OK;
	if (c->json)
		r = cli_print_json(json_pack("{s:s, s:s, s:I, s:I, s:I, s:f}", "device", j.device, "verdict",
					     probe_verdict_name(pr.verdict), "reported_bytes",
					     (json_int_t)pr.reported_size, "usable_bytes", (json_int_t)pr.usable_size,
					     "blocks_probed", (json_int_t)pr.blocks_probed, "seconds", secs));
	if (!c->json)
		printf("%s: %s, %s reported, %s usable (%llu blocks probed in %.2f s)\n", j.device,
		       probe_verdict_name(pr.verdict), format_size(pr.reported_size, a, sizeof(a)),
		       format_size(pr.usable_size, b, sizeof(b)), (unsigned long long)pr.blocks_probed, secs);
	if (pr.verdict != PROBE_GENUINE) {
		bool json = c->json;
		c->json = false; /* the document above already says it */
		r = job_fail(&j, UFC_DEVICE_FAKE_CAPACITY, pr.usable_size,
			     "%s is fake (%s): only %s of %s reported is real", j.device,
			     probe_verdict_name(pr.verdict), format_size(pr.usable_size, a, sizeof(a)),
			     format_size(pr.reported_size, b, sizeof(b)));
		c->json = json;
		goto out;
	}
out:
	job_done(&j);
	return r;
}
