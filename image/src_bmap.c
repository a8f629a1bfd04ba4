/* bmap filter: an image with a bmaptool block map (PATH.bmap, XML) beside it produces only
 * its mapped ranges; the holes are neither read (raw: no I/O at all) nor written. The parser
 * is deliberately small: it reads <ImageSize>, <BlockSize>, <MappedBlocksCount> and every
 * <Range> ("a-b" or "a", block numbers, inclusive) inside <BlockMap>, ignoring attributes
 * (checksums: the writer hashes what it writes) and everything else. Ranges are rounded out
 * to 4096 bytes, sorted, merged and clipped to ImageSize. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/src_internal.h"

struct bmap_src {
	struct blksrc base;
	struct stream_src *inner;
	uint64_t *ranges; /* 2*n: start, end (bytes) */
	size_t n, cur;
};

/* Text of the first element named tag after *p (up to its closing tag); advances *p past it.
 * Returns the content span or NULL. Attributes in the opening tag are skipped. */
static const char *xml_next(const char *p, const char *end, const char *tag, const char **ret_end,
			    const char **ret_after)
{
	size_t tl = strlen(tag);

	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		if (!lt || (size_t)(end - lt) < tl + 2)
			return NULL;
		if (!strncmp(lt + 1, tag, tl) && (lt[1 + tl] == '>' || lt[1 + tl] == ' ' || lt[1 + tl] == '\t' ||
						  lt[1 + tl] == '\n' || lt[1 + tl] == '\r')) {
			const char *gt = memchr(lt, '>', (size_t)(end - lt));
			if (!gt)
				return NULL;
			const char *c = gt + 1;
			const char *close = c;
			for (;;) {
				close = memchr(close, '<', (size_t)(end - close));
				if (!close || (size_t)(end - close) < tl + 3)
					return NULL;
				if (close[1] == '/' && !strncmp(close + 2, tag, tl))
					break;
				close++;
			}
			*ret_end = close;
			*ret_after = close + 2 + tl;
			return c;
		}
		p = lt + 1;
	}
	return NULL;
}

static int parse_u64(const char *s, const char *e, const char **ret_next, uint64_t *ret)
{
	while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	if (s >= e || *s < '0' || *s > '9')
		return -EINVAL;
	uint64_t v = 0;
	while (s < e && *s >= '0' && *s <= '9') {
		uint64_t d = (uint64_t)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
		s++;
	}
	while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	*ret_next = s;
	*ret = v;
	return 0;
}

static int parse_tag_u64(const char *xml, const char *end, const char *tag, uint64_t *ret)
{
	const char *ce, *after, *next;
	const char *c = xml_next(xml, end, tag, &ce, &after);
	if (!c)
		return -ENOENT;
	int r = parse_u64(c, ce, &next, ret);
	if (r < 0)
		return r;
	return next == ce ? 0 : -EINVAL;
}

static int cmp_range(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Copy of xml without its <!-- comments --> (bmaptool's header comment names the tags). */
static char *strip_comments(const char *xml, size_t len, size_t *ret_len)
{
	char *out = malloc(len + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		if (len - i >= 4 && !memcmp(xml + i, "<!--", 4)) {
			const char *e = memmem(xml + i + 4, len - i - 4, "-->", 3);
			i = e ? (size_t)(e - xml) + 3 : len;
			continue;
		}
		out[o++] = xml[i++];
	}
	out[o] = 0;
	*ret_len = o;
	return out;
}

int bmap_parse(const char *raw, size_t raw_len, uint64_t *ret_image_size, uint64_t **ret_ranges, size_t *ret_n,
	       char **ret_error)
{
	size_t len;
	_cleanup_free_ char *xml = strip_comments(raw, raw_len, &len);
	if (!xml)
		return -ENOMEM;
	const char *end = xml + len;
	uint64_t image_size, bs, mapped_count = 0;
	_cleanup_free_ uint64_t *rg = NULL;
	size_t n = 0, cap = 0;
	const char *why = NULL;
	int r;

#define BAD(msg)                                                                                                       \
	do {                                                                                                           \
		why = (msg);                                                                                           \
		goto bad;                                                                                              \
	} while (0)
	if (!xml_next(xml, end, "bmap", &(const char *){ NULL }, &(const char *){ NULL }))
		BAD("no <bmap> element");
	if (parse_tag_u64(xml, end, "ImageSize", &image_size) < 0)
		BAD("missing or bad <ImageSize>");
	if (parse_tag_u64(xml, end, "BlockSize", &bs) < 0 || bs == 0 || bs > (1u << 30))
		BAD("missing or bad <BlockSize>");
	r = parse_tag_u64(xml, end, "MappedBlocksCount", &mapped_count);
	if (r < 0 && r != -ENOENT)
		BAD("bad <MappedBlocksCount>");

	const char *ce, *after;
	const char *map = xml_next(xml, end, "BlockMap", &ce, &after);
	if (!map)
		BAD("no <BlockMap>");
	const char *p = map, *map_end = ce;
	uint64_t counted = 0;
	for (;;) {
		const char *re, *rafter, *next;
		const char *c = xml_next(p, map_end, "Range", &re, &rafter);
		if (!c)
			break;
		uint64_t a, b;
		if (parse_u64(c, re, &next, &a) < 0)
			BAD("bad <Range>");
		b = a;
		if (next < re && *next == '-') {
			if (parse_u64(next + 1, re, &next, &b) < 0)
				BAD("bad <Range>");
		}
		if (next != re || b < a)
			BAD("bad <Range>");
		if (b >= UINT64_MAX / bs - 1)
			BAD("<Range> out of bounds");
		counted += b - a + 1;
		uint64_t s = ALIGN_DOWN(a * bs, 4096), e = (b + 1) * bs;
		if (s >= image_size)
			BAD("<Range> beyond <ImageSize>");
		/* rounded up to 4 KiB, clipped to ImageSize; an end within 4 KiB of 2^64 (block size 1)
		 * would wrap to 0 when rounded */
		uint64_t up;
		e = __builtin_add_overflow(e, 4095, &up) ? image_size : MIN(ALIGN_DOWN(up, 4096), image_size);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			uint64_t *nr = realloc(rg, cap * 2 * sizeof(uint64_t));
			if (!nr)
				return -ENOMEM;
			rg = nr;
		}
		rg[2 * n] = s;
		rg[2 * n + 1] = e;
		n++;
		p = rafter;
	}
	if (mapped_count && counted != mapped_count)
		BAD("<MappedBlocksCount> does not match the ranges");
	if (n > 1) /* rg is NULL when there is no range */
		qsort(rg, n, 2 * sizeof(uint64_t), cmp_range);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && rg[2 * i] <= rg[2 * (m - 1) + 1]) {
			rg[2 * (m - 1) + 1] = MAX(rg[2 * (m - 1) + 1], rg[2 * i + 1]);
			continue;
		}
		rg[2 * m] = rg[2 * i];
		rg[2 * m + 1] = rg[2 * i + 1];
		m++;
	}
	*ret_image_size = image_size;
	*ret_ranges = TAKE_PTR(rg);
	*ret_n = m;
	return 0;
bad:
	if (ret_error && asprintf(ret_error, "%s", why) < 0)
		*ret_error = NULL;
	return -EINVAL;
#undef BAD
}

static ssize_t bmap_read(struct blksrc *b, void *buf, size_t len, uint64_t *ret_off)
{
	struct bmap_src *m = (struct bmap_src *)b;
	struct stream_src *in = m->inner;

	while (m->cur < m->n && in->pos >= m->ranges[2 * m->cur + 1])
		m->cur++;
	if (m->cur >= m->n)
		return 0;
	uint64_t s = m->ranges[2 * m->cur], e = m->ranges[2 * m->cur + 1];
	int r = stream_skip_to(in, MAX(s, in->pos));
	if (r < 0)
		return src_fail(b, r, "%s", in->base.error ? in->base.error : "skip failed");
	uint64_t off;
	ssize_t n = stream_read(in, buf, (size_t)MIN((uint64_t)len, e - in->pos), &off);
	if (n < 0)
		return src_fail(b, (int)n, "%s", in->base.error ? in->base.error : "read failed");
	if (n == 0)
		return src_fail(b, -EINVAL, "%s: image ended inside a mapped range", in->path);
	*ret_off = off;
	return n;
}

static void bmap_free(struct blksrc *b)
{
	struct bmap_src *m = (struct bmap_src *)b;
	blksrc_free(&m->inner->base);
	free(m->ranges);
	free(b->error);
	free(m);
}

static const struct blksrc_ops bmap_ops = {
	.read = bmap_read,
	.free = bmap_free,
};

int src_bmap_new(struct stream_src *inner, int bmap_fd, const char *bmap_path, struct blksrc **ret, char **ret_error)
{
	_cleanup_free_ char *text = NULL, *why = NULL;
	uint64_t image_size;
	struct stat st;
	int r, fd = bmap_fd;

	if (fstat(fd, &st) < 0 || st.st_size > (64 << 20)) {
		close(fd);
		if (ret_error && asprintf(ret_error, "%s: unreadable or too large", bmap_path) < 0)
			*ret_error = NULL;
		blksrc_free(&inner->base);
		return -EINVAL;
	}
	text = malloc((size_t)st.st_size + 1);
	ssize_t got = text ? read(fd, text, (size_t)st.st_size) : -1;
	close(fd);
	if (got != st.st_size) {
		blksrc_free(&inner->base);
		return text ? -EIO : -ENOMEM;
	}
	text[got] = 0;

	struct bmap_src *m = calloc(1, sizeof(*m));
	if (!m) {
		blksrc_free(&inner->base);
		return -ENOMEM;
	}
	m->base.ops = &bmap_ops;
	m->inner = inner;
	r = bmap_parse(text, (size_t)got, &image_size, &m->ranges, &m->n, &why);
	if (r < 0) {
		if (ret_error && asprintf(ret_error, "%s: %s", bmap_path, why ? why : "malformed") < 0)
			*ret_error = NULL;
		bmap_free(&m->base);
		return r;
	}
	if (image_size != inner->base.size) {
		if (ret_error &&
		    asprintf(ret_error, "%s: ImageSize %llu differs from the image's %llu bytes", bmap_path,
			     (unsigned long long)image_size, (unsigned long long)inner->base.size) < 0)
			*ret_error = NULL;
		bmap_free(&m->base);
		return -EINVAL;
	}
	m->base.size = image_size;
	for (size_t i = 0; i < m->n; i++)
		m->base.mapped += m->ranges[2 * i + 1] - m->ranges[2 * i];
	*ret = &m->base;
	return 0;
}
