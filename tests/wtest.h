/* Helpers shared by the writer-path suites (test_blksrc, test_writer, test_probe,
 * test_pipeline): pattern images, target files, default write options, a stage sink that
 * captures log rows. Header-only. */
#pragma once

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/testutil.h"
#include "stages/stage.h"
#include "blkio/dev.h"

static inline struct write_opts wt_opts(void)
{
	return (struct write_opts){ .buffer_size = 1 << 20,
				    .queue_depth = 4,
				    .verify = true,
				    .reset_before_verify = true,
				    .stall_timeout = 60,
				    .probe = true };
}

/* A file of len pattern bytes at dir/name; returns the path and (when ret_data) the bytes. */
static inline char *wt_image(const char *dir, const char *name, size_t len, uint64_t seed, uint8_t **ret_data)
{
	uint8_t *d = malloc(len ? len : 1);
	cr_assert(d);
	tu_fill_pattern(d, len, seed);
	char *p = tu_path(dir, name);
	tu_write_file(p, d, len);
	if (ret_data)
		*ret_data = d;
	else
		free(d);
	return p;
}

/* A zero-filled target file of size bytes, opened for writing through the device table. */
static inline struct dev *wt_target(const char *dir, const char *name, uint64_t size, char **ret_path)
{
	char *p = tu_path(dir, name);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0);
	cr_assert(ftruncate(fd, (off_t)size) == 0);
	close(fd);
	struct dev *d = NULL;
	int r = dev_open(p, DEV_OPEN_WRITE, &d);
	cr_assert(r == 0, "dev_open %s: %d", p, r);
	if (ret_path)
		*ret_path = p;
	else
		free(p);
	return d;
}

static inline uint8_t *wt_read_file(const char *path, size_t len)
{
	uint8_t *b = calloc(1, len ? len : 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0);
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, b + got, len - got, (off_t)got);
		cr_assert(n > 0);
		got += (size_t)n;
	}
	close(fd);
	return b;
}

/* The log rows a stage wrote through its sink (wt_cap_log), for exact counts. */
struct wt_logcap {
	unsigned n, n_err;
	char first[256];   /* message of the first row */
	enum uf_code code; /* of the last error row */
	char details[256]; /* of the last error row */
};

static inline void wt_cap_log(void *ud, enum log_level lvl, enum stage_id st, const char *category, enum uf_code code,
			      const char *details, const char *message)
{
	struct wt_logcap *c = ud;
	(void)st;
	(void)category;
	if (!c->n++)
		snprintf(c->first, sizeof(c->first), "%s", message);
	if (lvl <= LOG_LVL_ERR) {
		c->n_err++;
		c->code = code;
		snprintf(c->details, sizeof(c->details), "%s", details ? details : "");
	}
}
