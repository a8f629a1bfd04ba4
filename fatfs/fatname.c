/* FAT long-name mapping, name sets and 8.3 short names; see fatname.h. Code points are
 * handled as uint32_t arrays internally; all strings in and out are UTF-8. */
#include "fatfs/fatname.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/utf8.h"

static size_t utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decode s into a malloc'd code point array; invalid bytes become '_' when lenient, else
 * -EILSEQ. */
static int decode(const char *s, bool lenient, uint32_t **ret, size_t *ret_n)
{
	size_t len = strlen(s), n = 0;
	uint32_t *cps = malloc((len + 1) * sizeof(uint32_t));

	if (!cps)
		return -ENOMEM;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		int l = utf8_decode((const unsigned char *)s + i, &cp);
		if (l < 0) {
			if (!lenient) {
				free(cps);
				return -EILSEQ;
			}
			cp = '_';
			l = 1;
		}
		cps[n++] = cp;
		i += (size_t)l;
	}
	*ret = cps;
	*ret_n = n;
	return 0;
}

static int encode(const uint32_t *cps, size_t n, char **ret)
{
	char *out = malloc(n * 4 + 1), *p = out;

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		p += utf8_put(cps[i], p);
	*p = 0;
	*ret = out;
	return 0;
}

static size_t units_of(const uint32_t *cps, size_t n)
{
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		u += cps[i] > 0xFFFF ? 2 : 1;
	return u;
}

static bool is_reserved(uint32_t cp) { return cp < 0x20 || (cp < 0x80 && strchr("\"*/:<>?\\|", (int)cp)); }

/* Index of the extension's dot in cps[0..n) (not at index 0), or n when none. */
static size_t ext_dot(const uint32_t *cps, size_t n)
{
	for (size_t i = n; i > 1; i--)
		if (cps[i - 1] == '.')
			return i - 1;
	return n;
}

static size_t strip_tail(const uint32_t *cps, size_t n)
{
	while (n > 0 && (cps[n - 1] == '.' || cps[n - 1] == ' '))
		n--;
	return n;
}

int fatname_map(const char *name, char **ret)
{
	_cleanup_free_ uint32_t *cps = NULL;
	size_t n, start = 0;
	int r;

	r = decode(name, true, &cps, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if (is_reserved(cps[i]))
			cps[i] = '_';
	while (start < n && cps[start] == ' ')
		start++;
	memmove(cps, cps + start, (n - start) * sizeof(uint32_t));
	n = strip_tail(cps, n - start);

	if (units_of(cps, n) > FATNAME_MAX_UNITS) {
		size_t dot = ext_dot(cps, n), ext_units = units_of(cps + dot, n - dot);
		size_t stem = 0, u = 0;

		if (ext_units > 32) { /* not an extension: cut the whole name */
			dot = n;
			ext_units = 0;
		}
		while (stem < dot) {
			size_t cu = cps[stem] > 0xFFFF ? 2 : 1;
			if (u + cu + ext_units > FATNAME_MAX_UNITS)
				break;
			u += cu;
			stem++;
		}
		memmove(cps + stem, cps + dot, (n - dot) * sizeof(uint32_t));
		n = stem + (n - dot);
		n = strip_tail(cps, n);
	}
	if (n == 0)
		return encode((const uint32_t[]){ '_' }, 1, ret);
	return encode(cps, n, ret);
}

bool fatname_is_valid(const char *name)
{
	_cleanup_free_ char *m = NULL;
	_cleanup_free_ uint32_t *cps = NULL;
	size_t n;

	if (decode(name, false, &cps, &n) < 0)
		return false;
	if (fatname_map(name, &m) < 0)
		return false;
	return strcmp(m, name) == 0;
}

int fatname_utf16(const char *name, uint16_t **ret_units, size_t *ret_n)
{
	_cleanup_free_ uint32_t *cps = NULL;
	uint16_t *u;
	size_t n, k = 0;
	int r;

	r = decode(name, false, &cps, &n);
	if (r < 0)
		return r;
	u = malloc((2 * n + 1) * sizeof(uint16_t));
	if (!u)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (cps[i] > 0xFFFF) {
			uint32_t v = cps[i] - 0x10000;
			u[k++] = (uint16_t)(0xD800 | (v >> 10));
			u[k++] = (uint16_t)(0xDC00 | (v & 0x3FF));
		} else
			u[k++] = (uint16_t)cps[i];
	}
	*ret_units = u;
	*ret_n = k;
	return 0;
}

static bool short_char_ok(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'()-@^_`{}~", c));
}

bool fatname_is_short(const char *name)
{
	const char *dot = strchr(name, '.');
	size_t base = dot ? (size_t)(dot - name) : strlen(name);
	size_t ext = dot ? strlen(dot + 1) : 0;

	if (base < 1 || base > 8 || ext > 3 || (dot && ext < 1))
		return false;
	for (size_t i = 0; i < base; i++)
		if (!short_char_ok((unsigned char)name[i]))
			return false;
	for (size_t i = 0; i < ext; i++)
		if (!short_char_ok((unsigned char)dot[1 + i]))
			return false;
	return true;
}

unsigned fatname_entries(const char *name)
{
	_cleanup_free_ uint32_t *cps = NULL;
	size_t n;

	if (fatname_is_short(name))
		return 1;
	if (decode(name, true, &cps, &n) < 0)
		return 1 + (FATNAME_MAX_UNITS + FATNAME_LFN_UNITS - 1) / FATNAME_LFN_UNITS; /* OOM: upper bound */
	return 1 + (unsigned)((units_of(cps, n) + FATNAME_LFN_UNITS - 1) / FATNAME_LFN_UNITS);
}

uint8_t fatname_checksum(const uint8_t sname[11])
{
	uint8_t sum = 0;
	for (int i = 0; i < 11; i++)
		sum = (uint8_t)(((sum & 1) << 7) + (sum >> 1) + sname[i]);
	return sum;
}

void fatname_short_to_text(const uint8_t sname[11], char buf[13])
{
	size_t k = 0;
	for (int i = 0; i < 8 && sname[i] != ' '; i++)
		buf[k++] = (char)sname[i];
	if (sname[8] != ' ') {
		buf[k++] = '.';
		for (int i = 8; i < 11 && sname[i] != ' '; i++)
			buf[k++] = (char)sname[i];
	}
	buf[k] = 0;
}

/* ---- sets ---- */

static uint32_t fold(uint32_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c + 32;
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 32;
	if (c == 0x178)
		return 0xFF;
	if (c == 0x130 || c == 0x131)
		return 'i';
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
		return c | 1;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
		return (c & 1) ? c + 1 : c;
	if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
		return c + 32;
	if (c >= 0x410 && c <= 0x42F)
		return c + 32;
	if (c >= 0x400 && c <= 0x40F)
		return c + 80;
	if (c >= 0xFF21 && c <= 0xFF3A)
		return c + 32;
	return c;
}

static char *folded(const char *name)
{
	_cleanup_free_ uint32_t *cps = NULL;
	char *out = NULL;
	size_t n;

	if (decode(name, true, &cps, &n) < 0)
		return NULL;
	for (size_t i = 0; i < n; i++)
		cps[i] = fold(cps[i]);
	if (encode(cps, n, &out) < 0)
		return NULL;
	return out;
}

struct fatname_set {
	char **slots; /* folded names, NULL = empty */
	size_t cap;   /* power of two */
	size_t n;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

int fatname_set_new(struct fatname_set **ret)
{
	struct fatname_set *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->cap = 64;
	s->slots = calloc(s->cap, sizeof(char *));
	if (!s->slots) {
		free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

struct fatname_set *fatname_set_free(struct fatname_set *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->cap; i++)
		free(s->slots[i]);
	free(s->slots);
	free(s);
	return NULL;
}

static size_t set_find(const struct fatname_set *s, const char *key)
{
	size_t i = hash_str(key) & (s->cap - 1);
	while (s->slots[i] && strcmp(s->slots[i], key) != 0)
		i = (i + 1) & (s->cap - 1);
	return i;
}

/* Takes ownership of key (freed when already present or on failure). */
static int set_insert_folded(struct fatname_set *s, char *key)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t oc = s->cap;
		char **old = s->slots;
		s->slots = calloc(oc * 2, sizeof(char *));
		if (!s->slots) {
			s->slots = old;
			free(key);
			return -ENOMEM;
		}
		s->cap = oc * 2;
		for (size_t i = 0; i < oc; i++)
			if (old[i])
				s->slots[set_find(s, old[i])] = old[i];
		free(old);
	}
	size_t i = set_find(s, key);
	if (s->slots[i]) {
		free(key);
		return 0;
	}
	s->slots[i] = key;
	s->n++;
	return 0;
}

bool fatname_set_contains(const struct fatname_set *s, const char *name)
{
	_cleanup_free_ char *key = folded(name);
	if (!key)
		return false;
	return s->slots[set_find(s, key)] != NULL;
}

/* stem + " (k)" + ext, with the stem cut to keep ≤ 255 units. */
static int twin_name(const uint32_t *cps, size_t n, unsigned k, char **ret)
{
	char tag[24];
	size_t dot = ext_dot(cps, n), taglen, ext_units, stem = 0, u = 0;
	_cleanup_free_ uint32_t *out = NULL;
	size_t m = 0;

	taglen = (size_t)snprintf(tag, sizeof(tag), " (%u)", k);
	ext_units = units_of(cps + dot, n - dot);
	if (ext_units + taglen > 64) { /* silly extension: treat the whole name as stem */
		dot = n;
		ext_units = 0;
	}
	while (stem < dot) {
		size_t cu = cps[stem] > 0xFFFF ? 2 : 1;
		if (u + cu + taglen + ext_units > FATNAME_MAX_UNITS)
			break;
		u += cu;
		stem++;
	}
	out = malloc((stem + taglen + (n - dot)) * sizeof(uint32_t));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < stem; i++)
		out[m++] = cps[i];
	for (size_t i = 0; i < taglen; i++)
		out[m++] = (unsigned char)tag[i];
	for (size_t i = dot; i < n; i++)
		out[m++] = cps[i];
	return encode(out, m, ret);
}

int fatname_set_unique(const struct fatname_set *s, const char *name, char **ret)
{
	_cleanup_free_ uint32_t *cps = NULL;
	_cleanup_free_ char *cand = NULL;
	size_t n;
	int r;

	cand = strdup(name);
	if (!cand)
		return -ENOMEM;
	if (fatname_set_contains(s, cand)) {
		r = decode(name, true, &cps, &n);
		if (r < 0)
			return r;
		for (unsigned k = 2;; k++) {
			free(cand);
			cand = NULL;
			r = twin_name(cps, n, k, &cand);
			if (r < 0)
				return r;
			if (!fatname_set_contains(s, cand))
				break;
		}
	}
	*ret = TAKE_PTR(cand);
	return 0;
}

int fatname_set_add(struct fatname_set *s, const char *name)
{
	char *key = folded(name);
	if (!key)
		return -ENOMEM;
	return set_insert_folded(s, key);
}

int fatname_set_add_unique(struct fatname_set *s, const char *name, char **ret)
{
	_cleanup_free_ char *cand = NULL;
	int r;

	r = fatname_set_unique(s, name, &cand);
	if (r < 0)
		return r;
	r = fatname_set_add(s, cand);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(cand);
	return 0;
}

/* ---- short names ---- */

struct sn_set {
	uint8_t (*keys)[11];
	bool *used;
	size_t cap;
};

static size_t sn_slot(const struct sn_set *t, const uint8_t k[11])
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < 11; i++)
		h = (h ^ k[i]) * 1099511628211ULL;
	size_t i = h & (t->cap - 1);
	while (t->used[i] && memcmp(t->keys[i], k, 11) != 0)
		i = (i + 1) & (t->cap - 1);
	return i;
}

static bool sn_has(const struct sn_set *t, const uint8_t k[11]) { return t->used[sn_slot(t, k)]; }

static void sn_add(struct sn_set *t, const uint8_t k[11])
{
	size_t i = sn_slot(t, k);
	memcpy(t->keys[i], k, 11);
	t->used[i] = true;
}

static void short_exact(const char *name, uint8_t out[11])
{
	const char *dot = strchr(name, '.');
	size_t base = dot ? (size_t)(dot - name) : strlen(name);

	/* out is the 11-byte 8.3 field of a directory entry: space padded, never NUL terminated */
	memset(out, ' ', 11);
	memcpy(out, name, base); // NOLINT(bugprone-not-null-terminated-result): a byte field, see above
	if (dot)
		memcpy(out + 8, dot + 1, strlen(dot + 1));
}

/* The basis name of NAME: base (≤ 8) and ext (≤ 3) in out, *lossy when information was lost. */
static int short_basis(const char *name, uint8_t out[11], size_t *ret_base_len, bool *ret_lossy)
{
	_cleanup_free_ uint32_t *cps = NULL;
	size_t n, i0 = 0, dot, bl = 0, el = 0;
	bool lossy = false;
	int r;

	r = decode(name, true, &cps, &n);
	if (r < 0)
		return r;
	memset(out, ' ', 11);
	while (i0 < n && (cps[i0] == '.' || cps[i0] == ' ')) {
		i0++;
		lossy = true;
	}
	dot = n;
	for (size_t i = n; i > i0; i--)
		if (cps[i - 1] == '.') {
			dot = i - 1;
			break;
		}
	for (size_t i = i0; i < n; i++) {
		uint32_t c = cps[i];
		bool in_ext = i > dot;
		if (i == dot)
			continue;
		if (c == ' ' || c == '.') {
			lossy = true;
			continue;
		}
		if (c >= 'a' && c <= 'z')
			c -= 32;
		if (c >= 0x80 || !short_char_ok((unsigned char)c)) {
			c = '_';
			lossy = true;
		}
		if (in_ext) {
			if (el < 3)
				out[8 + el++] = (uint8_t)c;
			else
				lossy = true;
		} else {
			if (bl < 8)
				out[bl++] = (uint8_t)c;
			else
				lossy = true;
		}
	}
	if (bl == 0) {
		out[0] = '_';
		bl = 1;
		lossy = true;
	}
	*ret_base_len = bl;
	*ret_lossy = lossy;
	return 0;
}

int fatname_short_names(const char *const *names, size_t n, uint8_t (*ret)[11])
{
	struct sn_set t = { 0 };
	bool *done = NULL;
	int r = 0;

	t.cap = 16;
	while (t.cap < 2 * n + 16)
		t.cap *= 2;
	t.keys = malloc(t.cap * 11);
	t.used = calloc(t.cap, sizeof(bool));
	done = calloc(n + 1, sizeof(bool));
	if (!t.keys || !t.used || !done) {
		r = -ENOMEM;
		goto out;
	}
	/* Pass 1: plain 8.3 names keep their own short name. */
	for (size_t i = 0; i < n; i++)
		if (fatname_is_short(names[i])) {
			short_exact(names[i], ret[i]);
			sn_add(&t, ret[i]);
			done[i] = true;
		}
	/* Pass 2: basis names, with a numeric tail when lossy or taken. */
	for (size_t i = 0; i < n; i++) {
		uint8_t basis[11], cand[11];
		size_t bl;
		bool lossy, found = false;

		if (done[i])
			continue;
		r = short_basis(names[i], basis, &bl, &lossy);
		if (r < 0)
			goto out;
		if (!lossy && !sn_has(&t, basis)) {
			memcpy(ret[i], basis, 11);
			sn_add(&t, basis);
			continue;
		}
		for (unsigned k = 1; k < 1000000 && !found; k++) {
			char tail[9];
			size_t tl = (size_t)snprintf(tail, sizeof(tail), "~%u", k);
			size_t keep = MIN(bl, 8 - tl);
			memcpy(cand, basis, 11);
			memset(cand + keep, ' ', 8 - keep);
			memcpy(cand + keep, tail, tl);
			if (!sn_has(&t, cand))
				found = true;
		}
		if (!found) {
			r = -ENOSPC;
			goto out;
		}
		memcpy(ret[i], cand, 11);
		sn_add(&t, cand);
	}
out:
	free(t.keys);
	free(t.used);
	free(done);
	return r;
}
