/* libFuzzer target: the configuration loader (config/config.c). The input is written as a
 * config file in a private folder (beside a valid password file, db.password, mode 0600) and
 * loaded with config_load(). Properties: it accepts or refuses, never crashes nor leaks; a
 * refusal comes with a one-line message naming the file; an accepted configuration holds
 * only values in the ranges DESIGN.md gives, and config_done() releases it all. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "config/config.h"
#include "fuzz/fuzz_util.h"

static char *conf_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	_cleanup_free_ char *pw = fuzz_path("db.password");

	conf_path = fuzz_path("usbforge.conf");
	fuzz_write_file(pw, "fuzz-secret\n", 12);
	return 0;
}

static bool sane_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n >= 1 && n <= 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") == n;
}

static void check_accepted(const struct uf_config *c)
{
	FUZZ_CHECK(c->path && strcmp(c->path, conf_path) == 0, "path");
	FUZZ_CHECK(sane_name(c->station), "station '%s'", c->station ? c->station : "(null)");
	FUZZ_CHECK(c->db.host && c->db.user && c->db.name && c->db.socket, "database strings");
	FUZZ_CHECK(c->db.port >= 1 && c->db.port <= 65535, "port %u", c->db.port);
	FUZZ_CHECK(c->worker.poll_interval > 0 && c->worker.poll_interval <= 3600, "poll_interval %g",
		   c->worker.poll_interval);
	FUZZ_CHECK(c->worker.heartbeat_interval > 0 && c->worker.heartbeat_interval <= 3600, "heartbeat_interval");
	FUZZ_CHECK(c->worker.max_concurrent >= 1 && c->worker.max_concurrent <= 64, "max_concurrent");
	FUZZ_CHECK(c->worker.capacity_tolerance >= 0 && c->worker.capacity_tolerance <= 0.5, "capacity_tolerance");
	FUZZ_CHECK(c->retry.n_delays <= 16 && (c->retry.n_delays == 0 || c->retry.delays), "retry.delays");
	for (size_t i = 0; i < c->retry.n_delays; i++)
		FUZZ_CHECK(isfinite(c->retry.delays[i]) && c->retry.delays[i] >= 0 && c->retry.delays[i] <= 86400,
			   "retry.delays[%zu] = %g", i, c->retry.delays[i]);
	FUZZ_CHECK(c->stuck.processing_timeout >= 2 * c->worker.heartbeat_interval, "processing_timeout");
	FUZZ_CHECK(c->stuck.queued_timeout > 0 && c->stuck.check_interval > 0, "stuck.*");
	FUZZ_CHECK(c->content.root && c->content.root[0] == '/', "content.root '%s' is not absolute",
		   c->content.root ? c->content.root : "(null)");
	FUZZ_CHECK(c->write.buffer_size >= 65536 && c->write.buffer_size <= (256u << 20) &&
			   c->write.buffer_size % 4096 == 0,
		   "write.buffer_size %llu", (unsigned long long)c->write.buffer_size);
	FUZZ_CHECK(c->write.queue_depth >= 1 && c->write.queue_depth <= 64, "queue_depth");
	FUZZ_CHECK(c->write.sync_interval >= (1u << 20) && c->write.sync_interval % 4096 == 0, "sync_interval");
	FUZZ_CHECK(c->write.stall_timeout > 0, "stall_timeout");
	FUZZ_CHECK(c->usb.mode == USB_MODE_UDEV || c->usb.mode == USB_MODE_STATIC, "usb.mode");
	FUZZ_CHECK(c->usb.n_slots <= 64, "slots");
	FUZZ_CHECK(c->usb.mode != USB_MODE_STATIC || c->usb.n_slots >= 1, "static mode without a slot");
	for (size_t i = 0; i < c->usb.n_slots; i++) {
		const struct slot_conf *s = &c->usb.slots[i];
		FUZZ_CHECK(sane_name(s->name), "slot %zu name", i);
		if (c->usb.mode == USB_MODE_STATIC)
			FUZZ_CHECK(s->path && s->path[0] == '/' && !s->port, "static slot %zu", i);
		else
			FUZZ_CHECK(s->port && !s->path, "udev slot %zu", i);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uf_config cfg;
	_cleanup_free_ char *err = NULL;

	fuzz_write_file(conf_path, data, size);
	int r = config_load(conf_path, &cfg, &err);
	if (r == 0) {
		FUZZ_CHECK(!err, "an accepted file left an error: %s", err);
		check_accepted(&cfg);
		config_done(&cfg);
		return 0;
	}
	FUZZ_CHECK(r == -EINVAL || r == -ENOMEM || r == -EFBIG, "config_load returned %d (%s)", r, strerror(-r));
	FUZZ_CHECK(err && *err, "refused (%d) without a message", r);
	FUZZ_CHECK(strncmp(err, conf_path, strlen(conf_path)) == 0 && err[strlen(conf_path)] == ':',
		   "the message does not start with the file: %s", err);
	FUZZ_CHECK(!strchr(err, '\n'), "the message is not one line: %s", err);
	FUZZ_CHECK(!strstr(err, "(null)") || memmem(data, size, "(null)", 6), "the message prints a NULL: %s", err);
	config_done(&cfg); /* zeroed on error: harmless */
	return 0;
}
