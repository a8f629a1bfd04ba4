/* Block sources (image/blksrc.c, src_*.c): raw, .zst (with and without a recorded size),
 * .xz and .gz images decode to the exact bytes and size, written through the writer they
 * round-trip byte for byte; corrupt/truncated images fail with a message; bmap files (hand
 * written, and by bmaptool) restrict the extents to the mapped ranges, also beside a .zst,
 * .xz or .gz image under bmaptool's naming (disk.img.zst + disk.img.bmap). */
#include <errno.h>
#include <stdio.h>

#include "image/src_internal.h"
#include "blkio/verify.h"
#include "blkio/writer.h"
#include "util/macro.h"
#include "wtest.h"

#define MiB (1u << 20)

/* Run a shell command in which every "@" stands for dir. */
static void run(const char *tmpl, const char *dir)
{
	char *cmd = NULL;
	size_t cap = strlen(tmpl) * (strlen(dir) + 1) + 1, o = 0;
	cmd = malloc(cap);
	cr_assert(cmd);
	for (const char *p = tmpl; *p; p++) {
		if (*p == '@') {
			memcpy(cmd + o, dir, strlen(dir));
			o += strlen(dir);
		} else
			cmd[o++] = *p;
	}
	cmd[o] = 0;
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	free(cmd);
}

/* Read all of src into a buffer of src->size bytes (holes zero). */
static uint8_t *slurp(struct blksrc *s, uint64_t *ret_mapped)
{
	uint8_t *out = calloc(1, s->size + 1);
	uint8_t *buf = malloc(MiB);
	uint64_t off, mapped = 0, last = 0;
	ssize_t n;
	while ((n = blksrc_read(s, buf, MiB, &off)) > 0) {
		cr_assert(off >= last && off % 4096 == 0);
		memcpy(out + off, buf, (size_t)n);
		mapped += (uint64_t)n;
		last = off + (uint64_t)n;
	}
	cr_assert_eq(n, 0, "read: %s", blksrc_error(s));
	free(buf);
	*ret_mapped = mapped;
	return out;
}

static size_t LEN = 5 * MiB + 333;

static uint8_t *make_img(const char *dir)
{
	uint8_t *data;
	char *p = wt_image(dir, "disk.img", LEN, 31, &data);
	/* some compressible zero runs */
	memset(data + MiB, 0, MiB);
	tu_write_file(p, data, LEN);
	free(p);
	return data;
}

static void check_format(const char *name, const char *cmd)
{
	char *dir = tu_tmpdir("src");
	uint8_t *data = make_img(dir);
	run(cmd, dir);
	char *p = tu_path(dir, name);
	struct blksrc *s = NULL;
	char *err = NULL;
	cr_assert_eq(blksrc_open_image(p, &s, &err), 0, "%s: %s", name, err);
	cr_assert_eq(s->size, LEN);
	cr_assert_eq(s->mapped, LEN);
	uint64_t mapped;
	uint8_t *got = slurp(s, &mapped);
	cr_assert_eq(mapped, LEN);
	cr_assert(memcmp(got, data, LEN) == 0);
	blksrc_free(s);

	/* And through the writer onto a target, verified against the source decoded again. */
	cr_assert_eq(blksrc_open_image(p, &s, NULL), 0);
	char *tpath;
	struct dev *d = wt_target(dir, "t.bin", 8 * MiB, &tpath);
	struct write_opts o = wt_opts();
	struct writer *w;
	cr_assert_eq(writer_new(d, s, &o, NULL, &w), 0);
	cr_assert_eq(writer_run(w, NULL, NULL), 0);
	blksrc_free(s);
	cr_assert_eq(blksrc_open_image(p, &s, NULL), 0);
	struct verify_opts vo = { .buffer_size = MiB, .queue_depth = 3, .stall_timeout = 60 };
	struct verify_result vr;
	cr_assert_eq(verify_source(d, s, &vo, NULL, &vr), 0);
	uint8_t *on = wt_read_file(tpath, LEN);
	cr_assert(memcmp(on, data, LEN) == 0);
	free(on);
	writer_free(w);
	blksrc_free(s);
	dev_free(d);
	free(tpath);
	free(got);
	free(data);
	free(p);
	tu_rmrf(dir);
	free(dir);
}

Test(blksrc, raw) { check_format("disk.img", "true @"); }
Test(blksrc, zstd) { check_format("disk.img.zst", "zstd -q -3 @/disk.img -o @/disk.img.zst"); }
Test(blksrc, zstd_no_recorded_size) { check_format("s.zst", "cat @/disk.img | zstd -q -c > @/s.zst"); }
Test(blksrc, zstd_multi_frame)
{
	check_format("m.zst", "cd @ && head -c 2000000 disk.img | zstd -q -c > m.zst && "
			      "tail -c +2000001 disk.img | zstd -q -c >> m.zst");
}
Test(blksrc, xz) { check_format("disk.img.xz", "xz -q -1 -k -c @/disk.img > @/disk.img.xz"); }
Test(blksrc, gzip) { check_format("disk.img.gz", "gzip -q -1 -c @/disk.img > @/disk.img.gz"); }

/* An xz file whose index claims more blocks than memory (found by fuzz_blksrc_xz: liblzma asked
 * for 3.5 GB) is refused at open, naming the limit, without taking the memory. */
Test(blksrc, xz_index_beyond_the_memory_limit_is_refused)
{
	char *dir = tu_tmpdir("src");
	char *p = tu_path(dir, "big-index.img.xz");
	_cleanup_free_ char *src = NULL;
	cr_assert(asprintf(&src, "%s/fuzz/regress/blksrc_xz/oom-index-0e721644", tu_source_dir()) > 0);
	FILE *f = fopen(src, "re");
	cr_assert(f, "%s", src);
	uint8_t buf[256];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	tu_write_file(p, buf, n);
	struct blksrc *s = NULL;
	char *err = NULL;
	cr_assert_eq(blksrc_open_image(p, &s, &err), -EINVAL);
	cr_assert_null(s);
	cr_assert(err && strstr(err, "big-index.img.xz") && strstr(err, "64 MiB"), "%s", err ? err : "(no message)");
	free(err);
	free(p);
	tu_rmrf(dir);
	free(dir);
}

Test(blksrc, truncated_zstd_is_an_error)
{
	char *dir = tu_tmpdir("src");
	free(make_img(dir));
	run("zstd -q @/disk.img -o @/x.zst", dir);
	run("truncate -s 100000 @/x.zst", dir);
	char *p = tu_path(dir, "x.zst");
	struct blksrc *s = NULL;
	char *err = NULL;
	int r = blksrc_open_image(p, &s, &err);
	if (r == 0) {
		uint64_t off;
		uint8_t *buf = malloc(MiB);
		ssize_t n;
		while ((n = blksrc_read(s, buf, MiB, &off)) > 0)
			;
		cr_assert_eq(n, -EINVAL);
		cr_assert(strstr(blksrc_error(s), "x.zst"), "%s", blksrc_error(s));
		free(buf);
		blksrc_free(s);
	} else {
		cr_assert_eq(r, -EINVAL);
		cr_assert(err && strstr(err, "x.zst"));
	}
	free(err);
	free(p);
	tu_rmrf(dir);
	free(dir);
}

Test(blksrc, bmap_parse_ranges)
{
	const char *x = "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n<ImageSize> 10000000 </ImageSize>\n"
			"<BlockSize> 4096 </BlockSize>\n<BlocksCount> 2442 </BlocksCount>\n"
			"<MappedBlocksCount> 12 </MappedBlocksCount>\n<BlockMap>\n"
			"<Range chksum=\"ab\"> 2441 </Range>\n<Range chksum=\"cd\"> 0-9 </Range>\n"
			"<Range> 20 </Range>\n</BlockMap>\n</bmap>\n";
	uint64_t size, *rg;
	size_t n;
	char *err = NULL;
	cr_assert_eq(bmap_parse(x, strlen(x), &size, &rg, &n, &err), 0, "%s", err);
	cr_assert_eq(size, 10000000);
	cr_assert_eq(n, 3);
	cr_assert_eq(rg[0], 0);
	cr_assert_eq(rg[1], 40960);
	cr_assert_eq(rg[2], 20 * 4096);
	cr_assert_eq(rg[3], 21 * 4096);
	cr_assert_eq(rg[4], 2441 * 4096);
	cr_assert_eq(rg[5], 10000000);
	free(rg);
	const char *bad = "<bmap><ImageSize>100</ImageSize><BlockSize>4096</BlockSize>"
			  "<MappedBlocksCount>5</MappedBlocksCount><BlockMap><Range>0</Range></BlockMap></bmap>";
	cr_assert_eq(bmap_parse(bad, strlen(bad), &size, &rg, &n, &err), -EINVAL);
	cr_assert(strstr(err, "MappedBlocksCount"), "%s", err);
	free(err);
}

/* Found by fuzz_bmap_xml (fuzz/regress/bmap_xml): a range ending within 4095 bytes of 2^64
 * (block size 1) wrapped to 0 when rounded up to 4 KiB, so a map claiming the whole image
 * mapped nothing (or, from an offset, a "range" whose end came before its start). It is
 * clipped to ImageSize like any range past the end. */
Test(blksrc, bmap_parse_range_end_near_2_64_is_clipped)
{
	const char *x = "<bmap><ImageSize>1000000</ImageSize><BlockSize>1</BlockSize><BlockMap>"
			"<Range>8192-18446744073709551610</Range></BlockMap></bmap>";
	uint64_t size, *rg = NULL;
	size_t n;
	char *err = NULL;
	cr_assert_eq(bmap_parse(x, strlen(x), &size, &rg, &n, &err), 0, "%s", err);
	cr_assert_eq(size, 1000000);
	cr_assert_eq(n, 1);
	cr_assert_eq(rg[0], 8192);
	cr_assert_eq(rg[1], 1000000);
	free(rg);
}

/* Every refusal of a .bmap, with its exact reason: the checks in order of the old scanner's
 * messages, then what expat adds (well-formedness, no DOCTYPE so no entities, a depth limit,
 * a size limit) and the stricter reading of duplicates and of text inside numbers. */
#define HEAD "<bmap><ImageSize>100000</ImageSize><BlockSize>4096</BlockSize>"
static const struct {
	const char *xml, *why;
} bmap_refusals[] = {
	{ "<bmap><BlockSize>4096</BlockSize><BlockMap/></bmap>", "missing or bad <ImageSize>" },
	{ "<bmap><ImageSize>12x</ImageSize><BlockSize>4096</BlockSize><BlockMap/></bmap>",
	  "missing or bad <ImageSize>" },
	{ "<bmap><ImageSize>99999999999999999999</ImageSize><BlockSize>4096</BlockSize><BlockMap/></bmap>",
	  "missing or bad <ImageSize>" },
	{ "<bmap><ImageSize>1<b/>2</ImageSize><BlockSize>4096</BlockSize><BlockMap/></bmap>",
	  "missing or bad <ImageSize>" },
	{ "<bmap><ImageSize>1</ImageSize><ImageSize>1</ImageSize><BlockSize>4096</BlockSize><BlockMap/></bmap>",
	  "more than one <ImageSize>" },
	{ "<bmap><ImageSize>100000</ImageSize><BlockSize>0</BlockSize><BlockMap/></bmap>",
	  "missing or bad <BlockSize>" },
	{ "<bmap><ImageSize>100000</ImageSize><BlockMap/></bmap>", "missing or bad <BlockSize>" },
	{ HEAD "<MappedBlocksCount>-1</MappedBlocksCount><BlockMap/></bmap>", "bad <MappedBlocksCount>" },
	{ HEAD "</bmap>", "no <BlockMap>" },
	{ HEAD "<BlockMap/><BlockMap/></bmap>", "more than one <BlockMap>" },
	{ HEAD "<BlockMap><Range>9-3</Range></BlockMap></bmap>", "bad <Range>" },
	{ HEAD "<BlockMap><Range>1-</Range></BlockMap></bmap>", "bad <Range>" },
	{ HEAD "<BlockMap><Range>1-2-3</Range></BlockMap></bmap>", "bad <Range>" },
	/* the ranges before a bad one are judged first, as the scanner did */
	{ HEAD "<BlockMap><Range>100</Range><Range>x</Range></BlockMap></bmap>", "<Range> beyond <ImageSize>" },
	{ HEAD "<BlockMap><Range>0-18446744073709551614</Range></BlockMap></bmap>", "<Range> out of bounds" },
	{ HEAD "<MappedBlocksCount>3</MappedBlocksCount><BlockMap><Range>0</Range></BlockMap></bmap>",
	  "<MappedBlocksCount> does not match the ranges" },
	{ "<bmaps><ImageSize>1</ImageSize></bmaps>", "no <bmap> element" },
	{ "<bmap", "malformed XML (line 1: unclosed token)" },
	{ HEAD "<BlockMap>\n<Range>0</Rnge>\n</BlockMap></bmap>", "malformed XML (line 2: mismatched tag)" },
	{ HEAD "<BlockMap><Range>&x;</Range></BlockMap></bmap>", "malformed XML (line 1: undefined entity)" },
	/* no DTD: no billion laughs, no external entity */
	{ "<!DOCTYPE bmap [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>" HEAD "<BlockMap/></bmap>",
	  "a DOCTYPE is not allowed" },
	{ "<?xml version=\"1.0\"?><!DOCTYPE bmap SYSTEM \"/etc/passwd\"><bmap>&x;</bmap>", "a DOCTYPE is not allowed" },
	{ HEAD "<a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>"
	       "</a></a></a></a></a></a></a></a></a></a></a></a></a></a></a></a><BlockMap/></bmap>",
	  "elements nested too deep" },
};
#undef HEAD

Test(blksrc, bmap_parse_refusals)
{
	for (size_t i = 0; i < ARRAY_SIZE(bmap_refusals); i++) {
		const char *x = bmap_refusals[i].xml;
		uint64_t size = 0, *rg = NULL;
		size_t n = 0;
		char *err = NULL;
		cr_assert_eq(bmap_parse(x, strlen(x), &size, &rg, &n, &err), -EINVAL, "%s", x);
		cr_assert_str_eq(err, bmap_refusals[i].why, "%s", x);
		cr_assert_null(rg);
		free(err);
	}
}

/* Comments (bmaptool's header names the tags), CDATA, character references, attributes, a
 * processing instruction and elements bmaptool does not write are all just XML; elements
 * nest up to 16 deep (the <bmap> root counts). */
Test(blksrc, bmap_parse_is_xml)
{
	const char *x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			"<!-- <ImageSize> 1 </ImageSize> <BlockMap><Range>0-99</Range></BlockMap> -->\n"
			"<?bmaptool x?><bmap version=\"2.0\"><Extra><ImageSize>7</ImageSize></Extra>\n"
			"<ImageSize><![CDATA[ 100000 ]]></ImageSize><BlockSize>&#52;096</BlockSize>"
			"<a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>"
			"</a></a></a></a></a></a></a></a></a></a></a></a></a></a></a>"
			"<BlockMap><Range chksum=\"x\"> 2 <!-- two --></Range><Other><Range>9</Range></Other>"
			"</BlockMap></bmap>\n";
	uint64_t size, *rg = NULL;
	size_t n;
	char *err = NULL;
	cr_assert_eq(bmap_parse(x, strlen(x), &size, &rg, &n, &err), 0, "%s", err);
	cr_assert_eq(size, 100000);
	cr_assert_eq(n, 1);
	cr_assert_eq(rg[0], 2 * 4096);
	cr_assert_eq(rg[1], 3 * 4096);
	free(rg);
}

/* More than 64 MiB of map is refused before expat sees it. */
Test(blksrc, bmap_parse_refuses_huge_maps)
{
	size_t len = ((size_t)64 << 20) + 1;
	char *x = malloc(len);
	cr_assert(x);
	memset(x, ' ', len);
	uint64_t size, *rg = NULL;
	size_t n;
	char *err = NULL;
	cr_assert_eq(bmap_parse(x, len, &size, &rg, &n, &err), -EINVAL);
	cr_assert_str_eq(err, "larger than 64 MiB");
	free(err);
	free(x);
}

/* A sparse 16 MiB image dir/sp.img with data at [1M,1M+12K) , [5M, 7M) and the last 5000
 * bytes; returns its path and its bytes (holes zero) in *ret_data. */
#define SP_LEN	  ((size_t)16 * MiB)
#define SP_MAPPED ((uint64_t)12288 + 2 * MiB + 8192) /* last range: blocks 4094..4095 */
static char *sparse_image(const char *dir, uint8_t **ret_data)
{
	size_t len = SP_LEN;
	char *p = tu_path(dir, "sp.img");
	uint8_t *data = calloc(1, len);
	cr_assert(data);
	tu_fill_pattern(data + MiB, 12288, 1);
	tu_fill_pattern(data + 5 * MiB, 2 * MiB, 2);
	tu_fill_pattern(data + len - 5000, 5000, 3);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0 && ftruncate(fd, (off_t)len) == 0);
	cr_assert_eq(pwrite(fd, data + MiB, 12288, MiB), 12288);
	cr_assert_eq(pwrite(fd, data + 5 * MiB, 2 * MiB, 5 * MiB), 2 * MiB);
	cr_assert_eq(pwrite(fd, data + len - 5000, 5000, (off_t)(len - 5000)), 5000);
	close(fd);
	*ret_data = data;
	return p;
}

static bool sp_is_mapped(size_t i)
{
	return (i >= MiB && i < MiB + 12288) || (i >= 5 * MiB && i < 7 * MiB) || i >= SP_LEN - 8192;
}

/* Write s onto a target of len bytes full of 0xAA (the holes must keep it), check the bytes
 * written, and read it back through the writer's hashes: the written ranges only
 * (expect_written bytes read), then the whole device (len). */
static struct writer *write_over_aa(const char *dir, struct blksrc *s, size_t len, uint64_t expect_written,
				    struct dev **ret_d, char **ret_tpath)
{
	struct dev *d = wt_target(dir, "t.bin", len, ret_tpath);
	uint8_t *aa = malloc(len);
	cr_assert(aa);
	memset(aa, 0xaa, len);
	tu_write_file(*ret_tpath, aa, len);
	free(aa);
	struct write_opts o = wt_opts();
	struct writer *w;
	cr_assert_eq(writer_new(d, s, &o, NULL, &w), 0);
	cr_assert_eq(writer_run(w, NULL, NULL), 0);
	cr_assert_eq(writer_stats(w)->bytes_written, expect_written);
	struct verify_opts vo = { .buffer_size = MiB, .queue_depth = 3, .stall_timeout = 60 };
	struct verify_result vr;
	cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), 0);
	cr_assert_eq(vr.bytes_read, expect_written);
	vo.full = true;
	cr_assert_eq(writer_verify(w, d, &vo, NULL, &vr), 0);
	cr_assert_eq(vr.bytes_read, len);
	*ret_d = d;
	return w;
}

/* The target holds the image in its mapped ranges and 0xAA everywhere else. */
static void assert_sparse_on_target(const char *tpath, const uint8_t *data, size_t len)
{
	uint8_t *on = wt_read_file(tpath, len);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(on[i], sp_is_mapped(i) ? data[i] : 0xaa, "byte %zu", i);
	free(on);
}

static void bmap_roundtrip(bool use_bmaptool)
{
	char *dir = tu_tmpdir("src");
	size_t len = SP_LEN;
	uint8_t *data;
	char *p = sparse_image(dir, &data);
	uint64_t expect_mapped = SP_MAPPED;
	if (use_bmaptool) {
		run("bmaptool -q create -o @/sp.img.bmap @/sp.img", dir);
	} else {
		char *xml = NULL;
		cr_assert(asprintf(&xml,
				   "<bmap version=\"2.0\"><ImageSize>%zu</ImageSize><BlockSize>4096</BlockSize>"
				   "<MappedBlocksCount>517</MappedBlocksCount><BlockMap>"
				   "<Range>256-258</Range><Range>1280-1791</Range><Range>4094-4095</Range>"
				   "</BlockMap></bmap>",
				   len) > 0);
		char *bp = tu_path(dir, "sp.img.bmap");
		tu_write_file(bp, xml, strlen(xml));
		free(bp);
		free(xml);
	}
	struct blksrc *s = NULL;
	char *err = NULL;
	cr_assert_eq(blksrc_open_image(p, &s, &err), 0, "%s", err);
	cr_assert_eq(s->size, len);
	cr_assert_eq(s->mapped, expect_mapped);

	char *tpath;
	struct dev *d;
	struct writer *w = write_over_aa(dir, s, len, expect_mapped, &d, &tpath);
	assert_sparse_on_target(tpath, data, len);
	writer_free(w);
	blksrc_free(s);
	dev_free(d);
	free(tpath);
	free(data);
	free(p);
	tu_rmrf(dir);
	free(dir);
}

Test(blksrc, bmap_handwritten) { bmap_roundtrip(false); }
Test(blksrc, bmap_from_bmaptool) { bmap_roundtrip(true); }

/* A compressed image whose bmap is named after the uncompressed image (bmaptool's naming:
 * sp.img.zst beside sp.img.bmap; the raw sp.img is gone): the source yields exactly the three
 * mapped ranges, the writer writes only them onto a target full of 0xAA (the holes keep it),
 * and both read-backs (the writer's hashes, the compressed source decoded again) pass. */
static void bmap_compressed(const char *name, const char *compress)
{
	char *dir = tu_tmpdir("src");
	size_t len = SP_LEN;
	uint8_t *data;
	free(sparse_image(dir, &data));
	run("bmaptool -q create -o @/sp.img.bmap @/sp.img", dir);
	run(compress, dir);
	char *raw = tu_path(dir, "sp.img"), *p = tu_path(dir, name);
	cr_assert_eq(access(raw, F_OK), -1, "%s must not be there", raw);

	struct blksrc *s = NULL;
	char *err = NULL;
	cr_assert_eq(blksrc_open_image(p, &s, &err), 0, "%s: %s", name, err);
	cr_assert_eq(s->size, len);
	cr_assert_eq(s->mapped, SP_MAPPED);

	char *tpath;
	struct dev *d;
	struct writer *w = write_over_aa(dir, s, len, SP_MAPPED, &d, &tpath);
	size_t ne;
	const struct wextent *ext = writer_extents(w, &ne);
	cr_assert_eq(ne, 3);
	cr_assert_eq(ext[0].off, MiB);
	cr_assert_eq(ext[0].len, 12288);
	cr_assert_eq(ext[1].off, 5 * MiB);
	cr_assert_eq(ext[1].len, 2 * MiB);
	cr_assert_eq(ext[2].off, len - 8192);
	cr_assert_eq(ext[2].len, 8192);

	blksrc_free(s);
	cr_assert_eq(blksrc_open_image(p, &s, NULL), 0);
	struct verify_opts vo = { .buffer_size = MiB, .queue_depth = 3, .stall_timeout = 60 };
	struct verify_result vr;
	cr_assert_eq(verify_source(d, s, &vo, NULL, &vr), 0);
	cr_assert_eq(vr.bytes_read, SP_MAPPED);
	assert_sparse_on_target(tpath, data, len);
	writer_free(w);
	blksrc_free(s);
	dev_free(d);
	free(tpath);
	free(data);
	free(raw);
	free(p);
	tu_rmrf(dir);
	free(dir);
}

Test(blksrc, bmap_beside_zstd) { bmap_compressed("sp.img.zst", "zstd -q -3 --rm @/sp.img -o @/sp.img.zst"); }
Test(blksrc, bmap_beside_xz) { bmap_compressed("sp.img.xz", "xz -q -1 @/sp.img"); }
Test(blksrc, bmap_beside_gzip) { bmap_compressed("sp.img.gz", "gzip -q -1 @/sp.img"); }
