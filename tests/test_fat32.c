/* Tests of fatfs/fatname.c and fatfs/fat32.c: exact name mapping and short names, the layout
 * table, and composed images checked by outside oracles (fsck.fat, mtools) and by the
 * independent reader in fat_testlib.c (long names, bytes, contiguity, FSInfo). */
#include <criterion/criterion.h>
#include <errno.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fat_testlib.h"
#include "helpers/testutil.h"
#include "fatfs/fat32.h"
#include "fatfs/fatname.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define T0  INT64_C(1700000000) /* 2023-11-14 22:13:20 UTC */

/* ---- names ---- */

static void expect_map(const char *in, const char *out)
{
	char *m = NULL;
	cr_assert_eq(fatname_map(in, &m), 0);
	cr_assert_str_eq(m, out, "map(%s) = %s, expected %s", in, m, out);
	cr_assert(fatname_is_valid(m));
	free(m);
}

Test(fatname, map_exact)
{
	expect_map("Song One.mp3", "Song One.mp3");
	expect_map("a:b?c*d<e>f|g\"h\\i.mp3", "a_b_c_d_e_f_g_h_i.mp3");
	expect_map("tab\there.txt", "tab_here.txt");
	expect_map("trailing dots...", "trailing dots");
	expect_map("trailing. . .  ", "trailing");
	expect_map("   leading spaces.mp3", "leading spaces.mp3");
	expect_map("", "_");
	expect_map("...", "_");
	expect_map("..", "_");
	expect_map("bad\xff\xfe utf8.mp3", "bad__ utf8.mp3");
	expect_map("\xc0\xaf overlong", "__ overlong");
	expect_map("\xed\xa0\x80 surrogate", "___ surrogate");
	expect_map("Café Niño 日本語 🎵.mp3", "Café Niño 日本語 🎵.mp3");
	cr_assert_not(fatname_is_valid("a:b"));
	cr_assert_not(fatname_is_valid("x."));
	cr_assert_not(fatname_is_valid("\xff"));
}

Test(fatname, map_cuts_to_255_units_keeping_extension)
{
	char in[400], *m = NULL;
	memset(in, 'x', 300);
	memcpy(in + 300, ".mp3", 5);
	cr_assert_eq(fatname_map(in, &m), 0);
	cr_assert_eq(strlen(m), 255);
	cr_assert_str_eq(m + 251, ".mp3");
	free(m);

	/* emoji count as 2 units: 130 of them = 260 units → 125 emoji + ".mp3" = 254 units */
	char big[1024] = "";
	size_t bl = 0;
	for (int i = 0; i < 130; i++)
		bl += (size_t)snprintf(big + bl, sizeof(big) - bl, "🎵");
	snprintf(big + bl, sizeof(big) - bl, ".mp3");
	cr_assert_eq(fatname_map(big, &m), 0);
	cr_assert_eq(strlen(m), 125 * 4 + 4);
	uint16_t *u = NULL;
	size_t n = 0;
	cr_assert_eq(fatname_utf16(m, &u, &n), 0);
	cr_assert_eq(n, 254);
	cr_assert_eq(u[0], 0xD83C);
	cr_assert_eq(u[1], 0xDFB5);
	cr_assert_eq(fatname_entries(m), 1 + 20);
	free(u);
	free(m);
}

Test(fatname, entries_and_short)
{
	cr_assert(fatname_is_short("README.TXT"));
	cr_assert(fatname_is_short("A"));
	cr_assert(fatname_is_short("ABCDEFGH.ABC"));
	cr_assert_not(fatname_is_short("readme.txt"));
	cr_assert_not(fatname_is_short("ABCDEFGHI.TXT"));
	cr_assert_not(fatname_is_short("A B.TXT"));
	cr_assert_not(fatname_is_short("A.B.C"));
	cr_assert_not(fatname_is_short(".TXT"));
	cr_assert_eq(fatname_entries("README.TXT"), 1);
	cr_assert_eq(fatname_entries("readme.txt"), 2);
	cr_assert_eq(fatname_entries("1234567890123"), 2);  /* 13 units: one LFN entry */
	cr_assert_eq(fatname_entries("12345678901234"), 3); /* 14 units: two */
	cr_assert_eq(fatname_entries("日本語.mp3"), 2);
}

static void expect_shorts(const char *const *names, size_t n, const char *const *want)
{
	uint8_t(*sn)[11] = calloc(n, 11);
	cr_assert_eq(fatname_short_names(names, n, sn), 0);
	for (size_t i = 0; i < n; i++) {
		char t[13];
		fatname_short_to_text(sn[i], t);
		cr_assert_str_eq(t, want[i], "short(%s) = %s, expected %s", names[i], t, want[i]);
	}
	free(sn);
}

Test(fatname, short_names_windows_like)
{
	const char *names[] = { "Song.mp3",   "My File.txt", "Track number 1.mp3", "Track number 2.mp3", "TRACKN~1.MP3",
				"日本語.mp3", ".hidden",     "a+b,c;d=e[f].txt",   "archive.tar.gz",	 "README.TXT",
				"readme.md",  "x.jpeg" };
	const char *want[] = { "SONG.MP3", "MYFILE~1.TXT", "TRACKN~2.MP3", "TRACKN~3.MP3", "TRACKN~1.MP3", "___~1.MP3",
			       "HIDDEN~1", "A_B_C_~1.TXT", "ARCHIV~1.GZ",  "README.TXT",   "README.MD",	   "X~1.JPE" };
	expect_shorts(names, sizeof(names) / sizeof(names[0]), want);

	/* 12 twins: tails grow past 9 and the base shrinks to keep 8 characters */
	const char *tw[12], *tw_want[12];
	char buf[12][32], wb[12][16];
	for (int i = 0; i < 12; i++) {
		snprintf(buf[i], sizeof(buf[i]), "Long name %02d.mp3", i);
		tw[i] = buf[i];
		snprintf(wb[i], sizeof(wb[i]), i < 9 ? "LONGNA~%d.MP3" : "LONGN~%d.MP3", i + 1);
		tw_want[i] = wb[i];
	}
	expect_shorts(tw, 12, tw_want);
}

Test(fatname, set_twins)
{
	struct fatname_set *s = NULL;
	char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL;
	cr_assert_eq(fatname_set_new(&s), 0);
	cr_assert_eq(fatname_set_add_unique(s, "Song.mp3", &a), 0);
	cr_assert_eq(fatname_set_add_unique(s, "song.MP3", &b), 0);
	cr_assert_eq(fatname_set_add_unique(s, "SONG.mp3", &c), 0);
	cr_assert_eq(fatname_set_add_unique(s, "Café.mp3", &d), 0);
	cr_assert_eq(fatname_set_add_unique(s, "CAFÉ.mp3", &e), 0);
	cr_assert_eq(fatname_set_add_unique(s, "noext", &f), 0);
	cr_assert_str_eq(a, "Song.mp3");
	cr_assert_str_eq(b, "song (2).MP3");
	cr_assert_str_eq(c, "SONG (3).mp3");
	cr_assert_str_eq(d, "Café.mp3");
	cr_assert_str_eq(e, "CAFÉ (2).mp3");
	cr_assert_str_eq(f, "noext");
	cr_assert(fatname_set_contains(s, "NOEXT"));
	cr_assert_not(fatname_set_contains(s, "noext2"));
	free(a), free(b), free(c), free(d), free(e), free(f);
	fatname_set_free(s);
}

Test(fatname, checksum)
{
	/* Checked by hand with the spec's rotate-right sum. */
	cr_assert_eq(fatname_checksum((const uint8_t *)"README  TXT"), 0x73);
}

/* ---- layout ---- */

Test(layout, cluster_size_table)
{
	struct {
		uint64_t size;
		uint32_t cs;
	} cases[] = {
		{ 48 * MiB, 512 },	  { 64 * MiB, 512 },   { 100 * MiB, 1024 },	 { 200 * MiB, 2048 },
		{ 300 * MiB, 4096 },	  { 8 * GiB, 4096 },   { 8 * GiB + 4096, 8192 }, { 16 * GiB, 8192 },
		{ 16000000000ULL, 8192 }, { 32 * GiB, 16384 }, { 64 * GiB, 32768 },	 { 1024 * GiB, 32768 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fat_layout l;
		cr_assert_eq(fat_layout_compute(cases[i].size, &l), 0);
		cr_assert_eq(l.cluster_size, cases[i].cs, "%llu: cluster %u, expected %u",
			     (unsigned long long)cases[i].size, l.cluster_size, cases[i].cs);
		cr_assert_geq(l.n_clusters, FAT_MIN_CLUSTERS);
		cr_assert_eq(l.data_offset % (l.cluster_size > 4096 ? l.cluster_size : 4096), 0);
		cr_assert_eq(l.fat_offset % 4096, 0);
		cr_assert_geq((uint64_t)l.fat_sectors * 128, (uint64_t)l.n_clusters + 2);
		cr_assert_lt((uint64_t)(l.fat_sectors - 8) * 128, (uint64_t)l.n_clusters + 2, "FAT larger than needed");
		cr_assert_geq(l.reserved_sectors, 32);
		cr_assert_leq(l.data_offset + (uint64_t)l.n_clusters * l.cluster_size, l.size);
		cr_assert_gt(l.data_offset + (uint64_t)(l.n_clusters + 1) * l.cluster_size, l.size);
		cr_assert_leq(l.size, cases[i].size);
		cr_assert_eq(l.size % 4096, 0);
	}
	struct fat_layout l;
	cr_assert_eq(fat_layout_compute(33 * MiB, &l), -ERANGE);
	cr_assert_eq(fat_layout_compute(0, &l), -ERANGE);
}

/* ---- composed images ---- */

struct tree {
	char *dir;
	char *root; /* content root */
	char *img;
	struct job_item *items;
	size_t n;
};

static void tree_init(struct tree *t, const char *tag)
{
	memset(t, 0, sizeof(*t));
	t->dir = tu_tmpdir(tag);
	t->root = tu_path(t->dir, "content");
	t->img = tu_path(t->dir, "stick.img");
	cr_assert(mkdir(t->root, 0755) == 0);
	t->items = calloc(4096, sizeof(struct job_item));
}

static void tree_add(struct tree *t, const char *rel, const char *dest, uint64_t size)
{
	ft_make_file(t->root, rel, size, t->n + 1, T0 + (int64_t)t->n * 7, dest, &t->items[t->n]);
	t->n++;
}

static void tree_done(struct tree *t)
{
	ft_items_free(t->items, t->n);
	tu_rmrf(t->dir);
	free(t->dir);
	free(t->root);
	free(t->img);
}

static char *part_of(const char *img)
{
	char *p = NULL;
	cr_assert(asprintf(&p, "%s.part", img) > 0);
	return p;
}

/* Every item is in the image under its dest_path with its bytes, contiguous; the tree holds
 * exactly the items' folders and files; fsck.fat is happy. */
static void check_image(struct tree *t, uint64_t usable)
{
	char *part = part_of(t->img), *out = NULL;
	struct ft_fs fs;
	size_t n_files = 0, n_dirs = 0;

	cr_assert(ft_fsck_ok(part, &out), "fsck.fat:\n%s", out);
	free(out);
	ft_fs_open(&fs, part);
	cr_assert_null(fs.error, "reader: %s", fs.error);
	for (size_t i = 0; i < t->n; i++) {
		const struct ft_entry *e = ft_fs_find(&fs, t->items[i].dest_path);
		cr_assert(e, "%s missing from the image", t->items[i].dest_path);
		cr_assert_not(e->is_dir);
		cr_assert_eq(e->size, t->items[i].size);
		if (e->size) {
			uint32_t nc = (uint32_t)((e->size + fs.spc * fs.bps - 1) / (fs.spc * fs.bps));
			for (uint32_t k = 0; k + 1 < nc; k++)
				cr_assert_eq(ft_fs_fat(&fs, e->cluster + k), e->cluster + k + 1, "%s not contiguous",
					     e->path);
			uint8_t *data = ft_fs_read(&fs, e), *want = malloc(e->size);
			char *src = tu_path(t->root, t->items[i].rel_path);
			FILE *f = fopen(src, "rbe");
			cr_assert(f && fread(want, 1, e->size, f) == e->size);
			fclose(f);
			cr_assert(memcmp(data, want, e->size) == 0, "%s: bytes differ", e->path);
			free(data), free(want), free(src);
		} else
			cr_assert_eq(e->cluster, 0);
	}
	for (size_t j = 0; j < fs.n; j++) {
		if (fs.e[j].is_dir) {
			n_dirs++;
			continue;
		}
		n_files++;
	}
	cr_assert_eq(n_files, t->n, "image holds %zu files, expected %zu", n_files, t->n);
	(void)n_dirs;
	(void)usable;
	ft_fs_close(&fs);
	free(part);
}

static uint32_t part_u32(const char *img, uint64_t off)
{
	char *part = part_of(img);
	FILE *f = fopen(part, "rbe");
	uint8_t b[4];
	cr_assert(f);
	cr_assert(fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(b, 1, 4, f) == 4);
	fclose(f);
	free(part);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

Test(compose, ascii_tree_small_clusters_mtools_and_fsck, .timeout = 300)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 48 * MiB };
	char *out = NULL, *cmd = NULL;

	tree_init(&t, "fat-ascii");
	o.content_root = t.root;
	tree_add(&t, "Rock/Song One.mp3", "Rock/Song One.mp3", 1000);
	tree_add(&t, "Rock/x/A very long file name that goes on and on past sixty-four characters.mp3",
		 "Rock/A very long file name that goes on and on past sixty-four characters.mp3", 70000);
	tree_add(&t, "Rock/empty.txt", "Rock/empty.txt", 0);
	tree_add(&t, "Rock/one.bin", "Rock/one cluster.bin", 512);
	tree_add(&t, "Rock/two.bin", "Rock/one cluster and one byte.bin", 513);
	tree_add(&t, "Rock/README.TXT", "Rock/README.TXT", 3000);
	tree_add(&t, "Jazz/big.bin", "Jazz and Blues/big.bin", 3 * MiB + 123);
	for (int i = 0; i < 40; i++) { /* 40 x 3 entries > 16 entries of a 512-byte cluster */
		char rel[64], dest[96];
		snprintf(rel, sizeof(rel), "Pop/track %02d.mp3", i);
		snprintf(dest, sizeof(dest), "Pop/track %02d.mp3", i);
		tree_add(&t, rel, dest, 4096 + (uint64_t)i * 100);
	}
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, NULL), 0);
	check_image(&t, o.usable_size);

	/* mtools: the listing of the tree is exactly ours */
	cr_assert(asprintf(&cmd, "MTOOLS_SKIP_CHECK=1 mdir -/ -b -i '%s@@1M' ::/ | sort", t.img) > 0);
	cr_assert_eq(ft_run(cmd, &out), 0, "%s", out);
	free(cmd);
	{
		/* expected: every folder and file as ::/Folder/ and ::/Folder/Name */
		size_t wsz = 65536, wl = 0;
		char *want = calloc(1, wsz);
		const char *lines[64];
		size_t nl = 0;
		lines[nl++] = "::/Jazz and Blues/";
		lines[nl++] = "::/Pop/";
		lines[nl++] = "::/Rock/";
		char tmp[64][160];
		for (size_t i = 0; i < t.n; i++) {
			snprintf(tmp[i], sizeof(tmp[i]), "::/%s", t.items[i].dest_path);
			lines[nl++] = tmp[i];
		}
		/* sort as sort(1) does in the C locale */
		for (size_t i = 0; i < nl; i++)
			for (size_t j = i + 1; j < nl; j++)
				if (strcmp(lines[i], lines[j]) > 0) {
					const char *x = lines[i];
					lines[i] = lines[j];
					lines[j] = x;
				}
		for (size_t i = 0; i < nl; i++)
			wl += (size_t)snprintf(want + wl, wsz - wl, "%s\n", lines[i]);
		cr_assert_str_eq(out, want, "mdir listed:\n%s\nexpected:\n%s", out, want);
		free(want);
	}
	free(out);

	/* mcopy: byte-identical files */
	for (size_t i = 0; i < t.n; i++) {
		char *dst = tu_path(t.dir, "copy.out"), *src = tu_path(t.root, t.items[i].rel_path);
		unlink(dst);
		cr_assert(asprintf(&cmd, "MTOOLS_SKIP_CHECK=1 mcopy -n -i '%s@@1M' '::/%s' '%s' && cmp '%s' '%s'",
				   t.img, t.items[i].dest_path, dst, dst, src) > 0);
		cr_assert_eq(ft_run(cmd, &out), 0, "%s: %s", cmd, out);
		free(out), free(cmd), free(dst), free(src);
	}
	tree_done(&t);
}

Test(compose, four_kib_clusters_and_boot_fields, .timeout = 300)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 300 * MiB, .label = "My Music", .volume_id = 0x12345678 };
	struct fat_layout l;

	tree_init(&t, "fat-4k");
	o.content_root = t.root;
	tree_add(&t, "A/a.bin", "A/a.bin", 4096);
	tree_add(&t, "A/b.bin", "A/b.bin", 5 * MiB + 1);
	tree_add(&t, "B/c.bin", "B/c.bin", 1);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 4 * MiB, NULL), 0);
	check_image(&t, o.usable_size);
	cr_assert_eq(fat_layout_compute(o.usable_size, &l), 0);
	cr_assert_eq(l.cluster_size, 4096);

	/* MBR */
	FILE *f = fopen(t.img, "rbe");
	uint8_t mbr[512], bs[512], bk[512];
	cr_assert(f && fread(mbr, 1, 512, f) == 512);
	cr_assert(fseeko(f, (off_t)FAT_PART_OFFSET, SEEK_SET) == 0 && fread(bs, 1, 512, f) == 512);
	cr_assert(fseeko(f, (off_t)FAT_PART_OFFSET + 6 * 512, SEEK_SET) == 0 && fread(bk, 1, 512, f) == 512);
	fclose(f);
	cr_assert_eq(mbr[450], 0x0C);
	cr_assert_eq(mbr[446], 0x00);
	cr_assert_eq(mbr[454] | mbr[455] << 8 | mbr[456] << 16, 2048);
	cr_assert_eq((uint32_t)(mbr[458] | mbr[459] << 8 | mbr[460] << 16 | (uint32_t)mbr[461] << 24), l.part_sectors);
	cr_assert_eq(mbr[510], 0x55);
	cr_assert_eq(mbr[511], 0xAA);
	/* boot sector */
	cr_assert(memcmp(bs, bk, 512) == 0);
	cr_assert_eq(bs[21], 0xF8);
	cr_assert_eq(bs[13], 8);
	cr_assert_eq(bs[28] | bs[29] << 8, 2048);
	cr_assert(memcmp(bs + 71, "MY MUSIC   ", 11) == 0);
	cr_assert(memcmp(bs + 82, "FAT32   ", 8) == 0);
	cr_assert_eq(bs[67] | bs[68] << 8 | bs[69] << 16 | (uint32_t)bs[70] << 24, 0x12345678u);
	/* FSInfo: free = clusters - (root + 2 folders + 1 + 1281 + 1), next free right after */
	uint32_t used = 1 + 2 + 1 + 1281 + 1;
	cr_assert_eq(part_u32(t.img, 512 + 488), l.n_clusters - used);
	cr_assert_eq(part_u32(t.img, 512 + 492), 2 + used);

	/* the fsck oracle can fail: a wrong FSInfo free count or a cross-linked FAT are caught */
	{
		char *part = part_of(t.img), *out = NULL;
		FILE *pf = fopen(part, "r+be");
		uint8_t v[4] = { 5, 0, 0, 0 }, fatent[4] = { 4, 0, 0, 0 };
		cr_assert(pf);
		cr_assert(fseeko(pf, 512 + 488, SEEK_SET) == 0 && fwrite(v, 1, 4, pf) == 4);
		cr_assert(fflush(pf) == 0);
		cr_assert_not(ft_fsck_ok(part, &out), "fsck accepted a wrong free count:\n%s", out);
		free(out);
		cr_assert(fseeko(pf, (off_t)l.reserved_sectors * 512 + 3 * 4, SEEK_SET) == 0);
		cr_assert(fwrite(fatent, 1, 4, pf) == 4); /* folder A's chain now runs into folder B */
		fclose(pf);
		cr_assert_not(ft_fsck_ok(part, &out), "fsck accepted a cross-linked FAT:\n%s", out);
		free(out);
		free(part);
	}

	/* the label through mtools */
	char *cmd = NULL, *out = NULL;
	cr_assert(asprintf(&cmd, "MTOOLS_SKIP_CHECK=1 mlabel -s -i '%s@@1M' ::", t.img) > 0);
	cr_assert_eq(ft_run(cmd, &out), 0);
	cr_assert(strstr(out, "MY MUSIC"), "%s", out);
	free(cmd), free(out);
	tree_done(&t);
}

Test(compose, unicode_names_independent_reader, .timeout = 300)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	struct ft_fs fs;
	char *part;

	tree_init(&t, "fat-utf8");
	o.content_root = t.root;
	tree_add(&t, "Latino/cafe.mp3", "Latino/Café con leche.mp3", 2000);
	tree_add(&t, "Latino/nino.mp3", "Latino/Niño ñandú.mp3", 10);
	tree_add(&t, "Latino/jp.mp3", "Latino/日本語の歌.mp3", 100);
	tree_add(&t, "Latino/emoji.mp3", "Latino/🎵 música 🎶.mp3", 600);
	tree_add(&t, "Latino/mix.mp3", "Latino/Ελληνικά и русский.flac", 5);
	tree_add(&t, "x/y.mp3", "Música/canción.mp3", 7);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 64 * 1024, NULL), 0);
	check_image(&t, o.usable_size);

	part = part_of(t.img);
	ft_fs_open(&fs, part);
	const struct ft_entry *e = ft_fs_find(&fs, "Latino/🎵 música 🎶.mp3");
	cr_assert(e);
	cr_assert_str_eq(e->shortname, "_M_SIC~1.MP3");
	/* the entry's LFN bytes: first LFN entry (last ordinal) sits right before in the dir */
	e = ft_fs_find(&fs, "Música");
	cr_assert(e && e->is_dir);
	cr_assert_str_eq(e->shortname, "M_SICA~1");
	/* timestamps: T0 + 7*k seconds, in local time (the suites run with TZ=UTC) */
	e = ft_fs_find(&fs, "Latino/Café con leche.mp3");
	cr_assert_eq(e->wdate, ((2023 - 1980) << 9) | (11 << 5) | 14);
	cr_assert_eq(e->wtime, (22 << 11) | (13 << 5) | (20 / 2));
	ft_fs_close(&fs);
	free(part);
	tree_done(&t);
}

/* FAT stores local times: the same file composed in UTC+2 carries its time two hours later
 * (here across midnight: 22:13:20 UTC on Nov 14 is 00:13:20 on Nov 15). */
Test(compose, timestamps_are_local_time)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	struct ft_fs fs;

	cr_assert_eq(setenv("TZ", "UTC-2", 1), 0); /* POSIX: two hours east of UTC */
	tzset();
	tree_init(&t, "fat-tz");
	o.content_root = t.root;
	tree_add(&t, "Latino/cafe.mp3", "Latino/Café con leche.mp3", 2000);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 64 * 1024, NULL), 0);
	char *part = part_of(t.img);
	ft_fs_open(&fs, part);
	const struct ft_entry *e = ft_fs_find(&fs, "Latino/Café con leche.mp3");
	cr_assert(e);
	cr_assert_eq(e->wdate, ((2023 - 1980) << 9) | (11 << 5) | 15);
	cr_assert_eq(e->wtime, (0 << 11) | (13 << 5) | (20 / 2));
	ft_fs_close(&fs);
	free(part);
	tree_done(&t);
	cr_assert_eq(setenv("TZ", "UTC", 1), 0);
	tzset();
}

Test(compose, emoji_lfn_bytes)
{
	/* One file "🎵.mp3": UTF-16 D83C DFB5 002E 006D 0070 0033, then 0x0000 and 0xFFFF padding. */
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	struct fat_layout l;
	uint8_t d[96];

	tree_init(&t, "fat-lfn");
	o.content_root = t.root;
	tree_add(&t, "e.mp3", "C/🎵.mp3", 1);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, NULL), 0);
	check_image(&t, o.usable_size);
	cr_assert_eq(fat_layout_compute(o.usable_size, &l), 0);
	/* folder C is cluster 3: ".", "..", LFN, short */
	FILE *f = fopen(t.img, "rbe");
	cr_assert(f);
	cr_assert(fseeko(f, (off_t)(l.data_offset + l.cluster_size + 64), SEEK_SET) == 0);
	cr_assert(fread(d, 1, 64, f) == 64);
	fclose(f);
	static const uint8_t want_lfn[32] = { 0x41, 0x3C, 0xD8, 0xB5, 0xDF, 0x2E, 0x00, 0x6D, 0x00, 0x70, 0x00,
					      0x0F, 0x00, 0,	0x33, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF,
					      0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF };
	uint8_t sum = fatname_checksum(d + 32);
	cr_assert(memcmp(d + 32, "_~1     MP3", 11) == 0);
	for (int i = 0; i < 32; i++)
		if (i != 13)
			cr_assert_eq(d[i], want_lfn[i], "LFN byte %d: %02x, expected %02x", i, d[i], want_lfn[i]);
	cr_assert_eq(d[13], sum);
	tree_done(&t);
}

Test(compose, filled_to_the_last_cluster, .timeout = 300)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	struct fat_layout l;
	struct blksrc *s = NULL;
	struct fat_stats st;
	char *err = NULL;

	cr_assert_eq(fat_layout_compute(o.usable_size, &l), 0);
	tree_init(&t, "fat-full");
	o.content_root = t.root;
	/* root (1 cluster) + folder F (1 cluster: 2 + 2 + 2 entries) + a.bin + big.bin = all */
	tree_add(&t, "a.bin", "F/a.bin", 100);
	uint64_t rest = (uint64_t)(l.n_clusters - 3) * l.cluster_size;
	tree_add(&t, "big.bin", "F/big.bin", rest);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, NULL), 0);
	check_image(&t, o.usable_size);
	cr_assert_eq(part_u32(t.img, 512 + 488), 0);
	cr_assert_eq(part_u32(t.img, 512 + 492), 0xFFFFFFFFu);

	/* one byte more does not fit */
	t.items[1].size = rest + 1;
	cr_assert_eq(fat32_compose(&o, t.items, t.n, &s, &err), -ENOSPC);
	cr_assert(err && strstr(err, "F/big.bin"), "%s", err);
	free(err);
	t.items[1].size = rest;
	cr_assert_eq(fat32_compose(&o, t.items, t.n, &s, NULL), 0);
	fat32_stats(s, &st);
	cr_assert_eq(st.free_clusters, 0);
	cr_assert_eq(st.used_clusters, l.n_clusters);
	cr_assert_eq(st.dir_clusters, 2);
	/* the whole data region is written; the last extent ends at the partition's last cluster */
	cr_assert_eq(s->size, l.size);
	blksrc_free(s);
	tree_done(&t);
}

Test(compose, sha_mismatch_and_vanished_files)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	char *msg = NULL;

	tree_init(&t, "fat-sha");
	o.content_root = t.root;
	tree_add(&t, "A/one.bin", "A/one.bin", 10000);
	tree_add(&t, "A/two.bin", "A/two.bin", 20000);
	char xxh[33];
	memcpy(xxh, t.items[1].xxh128, sizeof(xxh));
	t.items[1].xxh128[0] = t.items[1].xxh128[0] == '0' ? '1' : '0';
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, &msg), -EBADMSG);
	cr_assert(msg && strstr(msg, "A/two.bin: content changed since the scan: xxh128 mismatch"), "%s", msg);
	free(msg), msg = NULL;
	/* an item scanned before schema v2 has no xxh128: its SHA-256 is checked instead */
	t.items[1].xxh128[0] = 0;
	t.items[1].sha256[0] = t.items[1].sha256[0] == '0' ? '1' : '0';
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, &msg), -EBADMSG);
	cr_assert(msg && strstr(msg, "A/two.bin: content changed since the scan: sha256 mismatch"), "%s", msg);
	free(msg), msg = NULL;

	/* the right digests (either kind) pass, also with a 4 KiB buffer */
	char *two = tu_path(t.root, "A/two.bin");
	char unused[33];
	ft_hash_file(two, t.items[1].sha256, unused);
	free(two);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 4096, NULL), 0);
	memcpy(t.items[1].xxh128, xxh, sizeof(xxh));
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 4096, NULL), 0);

	/* size changed */
	t.items[0].size = 9999;
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, &msg), -EBADMSG);
	cr_assert(msg && strstr(msg, "A/one.bin: size changed"), "%s", msg);
	free(msg), msg = NULL;
	t.items[0].size = 10000;
	/* mtime changed */
	t.items[0].mtime++;
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, &msg), -EBADMSG);
	cr_assert(msg && strstr(msg, "A/one.bin: mtime changed"), "%s", msg);
	free(msg), msg = NULL;
	t.items[0].mtime--;
	/* vanished */
	char *p = tu_path(t.root, "A/one.bin");
	cr_assert(unlink(p) == 0);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, &msg), -ENOENT);
	cr_assert(msg && strstr(msg, "A/one.bin"), "%s", msg);
	free(msg), free(p);
	tree_done(&t);
}

/* A library file swapped for a symlink to a file outside the content root, with the size and
 * mtime the scan recorded, and a row whose rel_path leaves the root: the composer opens
 * neither, and not a byte of the other file reaches the image. (Before openat2, the symlink
 * was followed and its target streamed until the hash check at the file's end.) */
Test(compose, symlinks_and_escapes_leak_nothing)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	char *msg = NULL;

	tree_init(&t, "fat-escape");
	o.content_root = t.root;
	tree_add(&t, "A/one.bin", "A/one.bin", 300000);
	struct job_item secret_it;
	ft_make_file(t.dir, "secret", 300000, 4242, t.items[0].mtime, NULL, &secret_it);
	char *secret = tu_path(t.dir, "secret"), *one = tu_path(t.root, "A/one.bin");
	uint8_t needle[4096];
	FILE *f = fopen(secret, "rbe");
	cr_assert(f && fread(needle, 1, sizeof(needle), f) == sizeof(needle));
	fclose(f);

	cr_assert_eq(unlink(one), 0);
	cr_assert_eq(symlink(secret, one), 0);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 64 * 1024, &msg), -EBADMSG);
	cr_assert_str_eq(msg, "A/one.bin: a symbolic link on the way (not followed)");
	free(msg), msg = NULL;
	cr_assert_not(tu_file_holds(t.img, needle, sizeof(needle)), "the symlink's target reached the image");

	free(t.items[0].rel_path);
	t.items[0].rel_path = strdup("../secret"); /* a row edited in the database */
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 64 * 1024, &msg), -EBADMSG);
	cr_assert_str_eq(msg, "../secret: outside its folder (an absolute path, \"..\" or an empty name)");
	free(msg), msg = NULL;
	cr_assert_not(tu_file_holds(t.img, needle, sizeof(needle)), "a file outside the root reached the image");

	free(t.items[0].rel_path);
	t.items[0].rel_path = strdup(secret); /* absolute */
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 64 * 1024, &msg), -EBADMSG);
	free(msg);
	cr_assert_not(tu_file_holds(t.img, needle, sizeof(needle)));

	free(secret_it.rel_path);
	free(secret), free(one);
	tree_done(&t);
}

Test(compose, invalid_plans)
{
	struct fat_opts o = { .usable_size = 40 * MiB, .content_root = "/nonexistent" };
	struct job_item it[2] = { { .dest_path = "A/x:y", .rel_path = "r", .size = 1 },
				  { .dest_path = "A/b", .rel_path = "r2", .size = 1 } };
	struct blksrc *s = NULL;
	char *err = NULL;

	cr_assert_eq(fat32_compose(&o, it, 1, &s, &err), -EINVAL);
	free(err);
	it[0].dest_path = "A/B";
	cr_assert_eq(fat32_compose(&o, it, 2, &s, &err), -EINVAL); /* b and B are twins */
	cr_assert(strstr(err, "duplicate"), "%s", err);
	free(err);
	it[0].dest_path = "A/c";
	it[0].size = UINT64_C(4) << 30;
	cr_assert_eq(fat32_compose(&o, it, 2, &s, &err), -EINVAL);
	free(err);
	o.usable_size = 20 * MiB;
	it[0].size = 1;
	cr_assert_eq(fat32_compose(&o, it, 2, &s, &err), -ERANGE);
	free(err);
	/* nothing is opened at compose time: a missing root is fine until read */
	o.usable_size = 40 * MiB;
	cr_assert_eq(fat32_compose(&o, it, 2, &s, NULL), 0);
	blksrc_free(s);
}

Test(compose, deterministic_and_buffer_size_independent, .timeout = 300)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	char *cmd = NULL, *out = NULL;

	tree_init(&t, "fat-det");
	o.content_root = t.root;
	for (int i = 0; i < 30; i++) {
		char rel[32], dest[64];
		snprintf(rel, sizeof(rel), "f%d", i);
		snprintf(dest, sizeof(dest), "%s/File number %d.dat", i % 3 ? "Odd" : "Even", i);
		tree_add(&t, rel, dest, (uint64_t)i * 777);
	}
	char *img2 = tu_path(t.dir, "two.img");
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 1 * MiB, NULL), 0);
	cr_assert_eq(ft_compose_image(&o, t.items, t.n, img2, 4096, NULL), 0);
	cr_assert(asprintf(&cmd, "cmp '%s' '%s'", t.img, img2) > 0);
	cr_assert_eq(ft_run(cmd, &out), 0, "%s", out);
	free(cmd), free(out), free(img2);
	check_image(&t, o.usable_size);
	tree_done(&t);
}

Test(compose, free_in_the_middle_of_reading)
{
	struct tree t;
	struct fat_opts o = { .usable_size = 40 * MiB };
	struct blksrc *s = NULL;
	uint8_t *buf = malloc(64 * 1024);
	uint64_t off;

	tree_init(&t, "fat-midfree");
	o.content_root = t.root;
	for (int i = 0; i < 12; i++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "F/%d.bin", i);
		tree_add(&t, rel, rel, 3 * MiB); /* 36 MiB: more than the read-ahead ring holds */
	}
	cr_assert_eq(fat32_compose(&o, t.items, t.n, &s, NULL), 0);
	ssize_t n;
	uint64_t total = 0;
	while ((n = blksrc_read(s, buf, 64 * 1024, &off)) > 0 && total < 8 * MiB)
		total += (uint64_t)n;
	cr_assert_gt(n, 0);
	blksrc_free(s); /* the reader thread is blocked on a full ring: free must stop and join it */
	free(buf);
	tree_done(&t);
}

Test(compose, one_and_two_kib_clusters, .timeout = 300)
{
	const uint64_t sizes[] = { 100 * MiB, 200 * MiB };
	const uint32_t want_cs[] = { 1024, 2048 };

	for (int k = 0; k < 2; k++) {
		struct tree t;
		struct fat_opts o = { .usable_size = sizes[k] };
		struct fat_layout l;

		cr_assert_eq(fat_layout_compute(sizes[k], &l), 0);
		cr_assert_eq(l.cluster_size, want_cs[k]);
		tree_init(&t, "fat-12k");
		o.content_root = t.root;
		/* odd sizes: files start mid-4 KiB block, extents are padded with zeros */
		tree_add(&t, "a", "Odd/a 1.bin", 1);
		tree_add(&t, "b", "Odd/b 2.bin", want_cs[k] - 1);
		tree_add(&t, "c", "Odd/c 3.bin", want_cs[k] + 1);
		tree_add(&t, "d", "Odd/d 4.bin", 3 * want_cs[k]);
		tree_add(&t, "e", "Odd/e 5.bin", 100000);
		for (int i = 0; i < 70; i++) { /* 70 x 2 entries > a 1 or 2 KiB directory cluster */
			char rel[16], dest[32];
			snprintf(rel, sizeof(rel), "m%d", i);
			snprintf(dest, sizeof(dest), "Many/item %d.txt", i);
			tree_add(&t, rel, dest, (uint64_t)(i * 37) % 3000);
		}
		cr_assert_eq(ft_compose_image(&o, t.items, t.n, t.img, 12 * 4096, NULL), 0);
		check_image(&t, o.usable_size);
		tree_done(&t);
	}
}
