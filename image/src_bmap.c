/* bmap filter: an image with a bmaptool block map (PATH.bmap, XML) beside it produces only
 * its mapped ranges; the holes are neither read (raw: no I/O at all) nor written. The map is
 * parsed with expat, bounded: at most BMAP_MAX_BYTES of text, elements nested at most
 * BMAP_MAX_DEPTH deep, no DOCTYPE (so no DTD and no entity of any kind; parameter entities are
 * off as well, and expat never fetches anything). Read are <ImageSize>, <BlockSize> and
 * <MappedBlocksCount> below the <bmap> root and every <Range> ("a-b" or "a", block numbers,
 * inclusive) of its <BlockMap>; attributes (checksums: the writer hashes what it writes),
 * comments and other elements are ignored. Ranges are rounded out to 4096 bytes, sorted,
 * merged and clipped to ImageSize. */
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/src_internal.h"

/* bmaptool writes a few KiB (one <Range> per extent); 64 MiB holds millions of ranges. */
#define BMAP_MAX_BYTES ((size_t)64 << 20)
/* bmaptool nests three deep (bmap > BlockMap > Range). */
#define BMAP_MAX_DEPTH 16
/* Characters of one number element's text, spaces included ("  18446744073709551615 - ..."). */
#define BMAP_MAX_TEXT 128

struct bmap_src {
	struct blksrc base;
	struct stream_src *inner;
	uint64_t *ranges; /* 2*n: start, end (bytes) */
	size_t n, cur;
};

/* The elements the map is read from; everything else is EL_OTHER. */
enum bmap_el {
	EL_OTHER,
	EL_BMAP,
	EL_IMAGE_SIZE,
	EL_BLOCK_SIZE,
	EL_MAPPED_COUNT,
	EL_BLOCK_MAP,
	EL_RANGE,
};

/* A number below <bmap>: how often it was seen, whether its (first) text was a number. */
struct bmap_num {
	unsigned seen;
	bool bad;
	uint64_t v;
};

/* The expat handlers' state. */
struct bmap_xml {
	XML_Parser parser;
	enum bmap_el stack[BMAP_MAX_DEPTH];
	unsigned depth;
	const char *stop_why; /* the reason the handlers stopped the parser, NULL when they did not */
	int stop_err;	      /* -EINVAL or -ENOMEM, with stop_why */

	/* The text of the innermost open element that reads_text(). */
	char text[BMAP_MAX_TEXT];
	size_t text_len;
	bool text_bad; /* longer than BMAP_MAX_TEXT, or an element inside it */

	bool root_is_bmap;
	struct bmap_num image_size, block_size, mapped_count;
	unsigned block_maps;
	uint64_t *rg; /* 2*n: first and last block of each <Range>, in document order */
	size_t n, cap;
	bool range_bad; /* the <Range> after the n kept ones is not "a" or "a-b" with a <= b */
};

static void parser_freep(XML_Parser *p)
{
	if (*p)
		XML_ParserFree(*p);
}

static void bmap_stop(struct bmap_xml *x, int err, const char *why)
{
	if (!x->stop_why) {
		x->stop_why = why;
		x->stop_err = err;
	}
	XML_StopParser(x->parser, XML_FALSE);
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

/* The elements whose text is a number or a range. */
static bool reads_text(enum bmap_el el)
{
	return el == EL_IMAGE_SIZE || el == EL_BLOCK_SIZE || el == EL_MAPPED_COUNT || el == EL_RANGE;
}

/* Which element this is, from its name and its parent's kind. */
static enum bmap_el classify(const struct bmap_xml *x, const char *name)
{
	enum bmap_el parent = x->depth ? x->stack[x->depth - 1] : EL_OTHER;

	if (x->depth == 0)
		return strcmp(name, "bmap") == 0 ? EL_BMAP : EL_OTHER;
	if (parent == EL_BMAP) {
		if (strcmp(name, "ImageSize") == 0)
			return EL_IMAGE_SIZE;
		if (strcmp(name, "BlockSize") == 0)
			return EL_BLOCK_SIZE;
		if (strcmp(name, "MappedBlocksCount") == 0)
			return EL_MAPPED_COUNT;
		if (strcmp(name, "BlockMap") == 0)
			return EL_BLOCK_MAP;
	}
	if (parent == EL_BLOCK_MAP && strcmp(name, "Range") == 0)
		return EL_RANGE;
	return EL_OTHER;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct bmap_xml *x = ud;

	if (x->depth == BMAP_MAX_DEPTH) {
		bmap_stop(x, -EINVAL, "elements nested too deep");
		return;
	}
	if (x->depth && reads_text(x->stack[x->depth - 1]))
		x->text_bad = true; /* an element inside a number */
	enum bmap_el el = classify(x, name);
	if (x->depth == 0) {
		if (el != EL_BMAP) {
			bmap_stop(x, -EINVAL, "no <bmap> element");
			return;
		}
		x->root_is_bmap = true;
	}
	if (el == EL_BLOCK_MAP)
		x->block_maps++;
	if (reads_text(el)) {
		x->text_len = 0;
		x->text_bad = false;
	}
	x->stack[x->depth++] = el;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct bmap_xml *x = ud;
	enum bmap_el el = x->depth ? x->stack[x->depth - 1] : EL_OTHER;

	if (x->stop_why || !reads_text(el))
		return;
	if ((size_t)len > sizeof(x->text) - x->text_len) {
		x->text_bad = true;
		return;
	}
	memcpy(x->text + x->text_len, s, (size_t)len);
	x->text_len += (size_t)len;
}

static void end_number(struct bmap_xml *x, struct bmap_num *num)
{
	const char *next, *e = x->text + x->text_len;

	if (num->seen++)
		return;
	num->bad = x->text_bad || parse_u64(x->text, e, &next, &num->v) < 0 || next != e;
}

static void end_range(struct bmap_xml *x)
{
	const char *next, *e = x->text + x->text_len;
	uint64_t a, b;

	if (x->range_bad)
		return; /* reported at the first bad one, after the ranges before it */
	if (x->text_bad || parse_u64(x->text, e, &next, &a) < 0) {
		x->range_bad = true;
		return;
	}
	b = a;
	if (next < e && *next == '-' && parse_u64(next + 1, e, &next, &b) < 0) {
		x->range_bad = true;
		return;
	}
	if (next != e || b < a) {
		x->range_bad = true;
		return;
	}
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 64;
		uint64_t *nr = realloc(x->rg, cap * 2 * sizeof(uint64_t));
		if (!nr) {
			bmap_stop(x, -ENOMEM, "out of memory");
			return;
		}
		x->rg = nr;
		x->cap = cap;
	}
	x->rg[2 * x->n] = a;
	x->rg[2 * x->n + 1] = b;
	x->n++;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct bmap_xml *x = ud;

	/* expat still reports the end of an empty element whose start stopped the parser */
	if (x->stop_why || x->depth == 0)
		return;
	switch (x->stack[--x->depth]) {
	case EL_IMAGE_SIZE:
		end_number(x, &x->image_size);
		break;
	case EL_BLOCK_SIZE:
		end_number(x, &x->block_size);
		break;
	case EL_MAPPED_COUNT:
		end_number(x, &x->mapped_count);
		break;
	case EL_RANGE:
		end_range(x);
		break;
	default:
		break;
	}
}

/* No DTD: no entity can be declared, so none can expand (billion laughs) or name a file. */
static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
			       int has_internal_subset)
{
	bmap_stop(ud, -EINVAL, "a DOCTYPE is not allowed");
}

/* Run expat over the text into x. 0, or -EINVAL with *ret_why (static text, or malloc'd into
 * *ret_msg for expat's own errors), -ENOMEM. */
static int bmap_xml_parse(struct bmap_xml *x, const char *raw, size_t len, const char **ret_why, char **ret_msg)
{
	_cleanup_(parser_freep) XML_Parser p = XML_ParserCreate(NULL);

	if (!p)
		return -ENOMEM;
	x->parser = p;
	XML_SetUserData(p, x);
	XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
	XML_SetStartDoctypeDeclHandler(p, on_doctype);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	if (XML_Parse(p, raw, (int)len, XML_TRUE) == XML_STATUS_OK)
		return 0;
	if (x->stop_why) {
		*ret_why = x->stop_why;
		return x->stop_err;
	}
	enum XML_Error e = XML_GetErrorCode(p);
	if (e == XML_ERROR_NO_MEMORY)
		return -ENOMEM;
	if (asprintf(ret_msg, "malformed XML (line %lu: %s)", (unsigned long)XML_GetCurrentLineNumber(p),
		     XML_ErrorString(e)) < 0) {
		*ret_msg = NULL;
		return -ENOMEM;
	}
	return -EINVAL;
}

static int cmp_range(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Refuse a bmap: *ret_error (when asked) = expat's account of the XML when there is one
 * (taken from *xml_error), else why; -EINVAL. */
static int refuse(char **ret_error, char **xml_error, const char *why)
{
	if (ret_error)
		*ret_error = *xml_error ? TAKE_PTR(*xml_error) : strdup(why ? why : "malformed");
	return -EINVAL;
}

int bmap_parse(const char *raw, size_t raw_len, uint64_t *ret_image_size, uint64_t **ret_ranges, size_t *ret_n,
	       char **ret_error)
{
	struct bmap_xml x = { 0 };
	_cleanup_free_ uint64_t *rg = NULL;
	_cleanup_free_ char *xml_error = NULL;
	uint64_t image_size, bs;
	const char *why = NULL;
	size_t n;
	int r;

	if (raw_len > BMAP_MAX_BYTES)
		return refuse(ret_error, &xml_error, "larger than 64 MiB");
	r = bmap_xml_parse(&x, raw, raw_len, &why, &xml_error);
	rg = TAKE_PTR(x.rg);
	n = x.n;
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return refuse(ret_error, &xml_error, why);
	if (!x.root_is_bmap)
		return refuse(ret_error, &xml_error, "no <bmap> element");
	if (x.image_size.seen > 1)
		return refuse(ret_error, &xml_error, "more than one <ImageSize>");
	if (!x.image_size.seen || x.image_size.bad)
		return refuse(ret_error, &xml_error, "missing or bad <ImageSize>");
	image_size = x.image_size.v;
	if (x.block_size.seen > 1)
		return refuse(ret_error, &xml_error, "more than one <BlockSize>");
	bs = x.block_size.v;
	if (!x.block_size.seen || x.block_size.bad || bs == 0 || bs > (1u << 30))
		return refuse(ret_error, &xml_error, "missing or bad <BlockSize>");
	if (x.mapped_count.seen > 1)
		return refuse(ret_error, &xml_error, "more than one <MappedBlocksCount>");
	if (x.mapped_count.bad)
		return refuse(ret_error, &xml_error, "bad <MappedBlocksCount>");
	if (x.block_maps == 0)
		return refuse(ret_error, &xml_error, "no <BlockMap>");
	if (x.block_maps > 1)
		return refuse(ret_error, &xml_error, "more than one <BlockMap>");

	uint64_t counted = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t a = rg[2 * i], b = rg[2 * i + 1];
		if (b >= UINT64_MAX / bs - 1)
			return refuse(ret_error, &xml_error, "<Range> out of bounds");
		counted += b - a + 1;
		uint64_t s = ALIGN_DOWN(a * bs, 4096), e = (b + 1) * bs;
		if (s >= image_size)
			return refuse(ret_error, &xml_error, "<Range> beyond <ImageSize>");
		/* rounded up to 4 KiB, clipped to ImageSize; an end within 4 KiB of 2^64 (block size 1)
		 * would wrap to 0 when rounded */
		uint64_t up;
		e = __builtin_add_overflow(e, 4095, &up) ? image_size : MIN(ALIGN_DOWN(up, 4096), image_size);
		rg[2 * i] = s;
		rg[2 * i + 1] = e;
	}
	if (x.range_bad)
		return refuse(ret_error, &xml_error, "bad <Range>");
	if (x.mapped_count.seen && x.mapped_count.v && counted != x.mapped_count.v)
		return refuse(ret_error, &xml_error, "<MappedBlocksCount> does not match the ranges");
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

	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > BMAP_MAX_BYTES) {
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
