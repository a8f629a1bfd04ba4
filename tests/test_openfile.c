/* Tests for util/openfile.c: special files are refused without blocking, and nothing outside a
 * root is opened through "..", an absolute path, or a symlink anywhere on the way. Both the
 * openat2 path and the O_NOFOLLOW walk (the fallback for kernels without it) are exercised. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/openfile.h"

static char dir[64]; /* "/tmp/uf-openfile-XXXXXX" */
static char outside[PATH_MAX];

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

static void setup(void)
{
	char p[PATH_MAX + 64];
	snprintf(dir, sizeof(dir), "%s", "/tmp/uf-openfile-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(outside, sizeof(outside), "%s/secret", dir);
	put(outside, "root:$6$secret\n");
	snprintf(p, sizeof(p), "%s/root", dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/root/sub", dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/root/sub/ok.bin", dir);
	put(p, "fine\n");
	snprintf(p, sizeof(p), "%s/root/link", dir);
	cr_assert_eq(symlink(outside, p), 0);
	snprintf(p, sizeof(p), "%s/root/inner-link", dir);
	cr_assert_eq(symlink("sub/ok.bin", p), 0);
	snprintf(p, sizeof(p), "%s/root/dirlink", dir);
	cr_assert_eq(symlink(dir, p), 0);
	snprintf(p, sizeof(p), "%s/root/fifo", dir);
	cr_assert_eq(mkfifo(p, 0600), 0);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(openfile, .init = setup, .fini = teardown, .timeout = 10);

static int root_fd(void)
{
	char p[PATH_MAX + 8];
	snprintf(p, sizeof(p), "%s/root", dir);
	int fd = open_root_dir(p);
	cr_assert_geq(fd, 0, "open_root_dir(%s) = %d", p, fd);
	return fd;
}

static void beneath_cases(int (*open_fn)(int, const char *, struct stat *))
{
	int root = root_fd();
	struct stat st = { .st_size = 12345 };

	int fd = open_fn(root, "sub/ok.bin", &st);
	cr_assert_geq(fd, 0, "sub/ok.bin: %d", fd);
	cr_assert_eq(st.st_size, 5);
	cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "O_NONBLOCK left set");
	close(fd);

	struct {
		const char *rel;
		int err;
	} bad[] = {
		{ "../secret", -EXDEV },
		{ "sub/../../secret", -EXDEV },
		{ outside, -EXDEV },
		{ "link", -ELOOP },
		{ "inner-link", -ELOOP },
		{ "dirlink/secret", -ELOOP },
		{ "fifo", -EINVAL },
		{ "sub", -EISDIR },
		{ "", -EXDEV },
		{ "sub/./ok.bin", -EXDEV },
		{ "sub//ok.bin", -EXDEV },
		{ "missing", -ENOENT },
		{ "sub/ok.bin/x", -ENOTDIR },
		{ "a\033]0;x\007", -EXDEV },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct stat keep = { .st_size = 777 };
		int r = open_fn(root, bad[i].rel, &keep);
		if (r >= 0)
			close(r);
		cr_expect_eq(r, bad[i].err, "open_beneath(%s) = %d (%s), want %d", bad[i].rel, r,
			     r < 0 ? strerror(-r) : "opened", bad[i].err);
		cr_expect_eq(keep.st_size, 777, "%s: stat written on failure", bad[i].rel);
	}
	close(root);
}

Test(openfile, beneath_with_openat2) { beneath_cases(open_beneath); }

Test(openfile, beneath_with_nofollow_walk) { beneath_cases(open_beneath_walk); }

Test(openfile, regular_refuses_special_files_at_once)
{
	char p[PATH_MAX + 16];
	struct stat st;

	snprintf(p, sizeof(p), "%s/root/fifo", dir); /* no writer: a blocking open would hang */
	cr_assert_eq(open_regular(p, &st), -EINVAL);
	cr_assert_eq(open_regular("/dev/null", &st), -EINVAL);
	cr_assert_eq(open_regular("/dev/zero", NULL), -EINVAL);
	snprintf(p, sizeof(p), "%s/root", dir);
	cr_assert_eq(open_regular(p, NULL), -EISDIR);

	snprintf(p, sizeof(p), "%s/root/sock", dir);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	cr_assert_lt(strlen(p), sizeof(sa.sun_path));
	memcpy(sa.sun_path, p, strlen(p) + 1); /* fits: asserted above */
	cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(open_regular(p, NULL), -ENXIO);
	close(s);

	int fd = open_regular(outside, &st);
	cr_assert_geq(fd, 0);
	cr_assert_eq(st.st_size, 15);
	close(fd);
}

Test(openfile, root_dir_must_be_a_directory)
{
	char p[PATH_MAX + 16];
	cr_assert_eq(open_root_dir(outside), -ENOTDIR);
	snprintf(p, sizeof(p), "%s/root/dirlink", dir); /* the configured root may be a symlink */
	int fd = open_root_dir(p);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/root/fifo", dir);
	cr_assert_eq(open_root_dir(p), -ENOTDIR);
	cr_assert_eq(open_root_dir("/nonexistent-uf-root"), -ENOENT);
}

Test(openfile, path_beneath_is_lexical)
{
	cr_assert_str_eq(path_beneath("/srv/img", "/srv/img/a.img"), "a.img");
	cr_assert_str_eq(path_beneath("/srv/img/", "/srv/img/d/a.img"), "d/a.img");
	cr_assert_str_eq(path_beneath("/srv/img", "/srv/img//a.img"), "a.img");
	cr_assert_str_eq(path_beneath("/srv/img", "/srv/img/../x"), "../x"); /* open_beneath refuses it */
	cr_assert_str_eq(path_beneath("/", "/etc/x"), "etc/x");
	cr_assert_null(path_beneath("/srv/img", "/srv/img"));
	cr_assert_null(path_beneath("/srv/img", "/srv/img/"));
	cr_assert_null(path_beneath("/srv/img", "/srv/images/a.img"));
	cr_assert_null(path_beneath("/srv/img", "/etc/shadow"));
	cr_assert_null(path_beneath("/srv/img", "a.img"));
}

Test(openfile, tidy)
{
	const char *cases[][2] = {
		{ "/a//b/", "/a/b" }, { "dir/.", "dir" },   { ".", "." },	    { "/", "/" },
		{ "//", "/" },	      { "./x/./y", "x/y" }, { "a/../b", "a/../b" }, { "/srv/img/./", "/srv/img" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = path_tidy(cases[i][0]);
		cr_expect_str_eq(t, cases[i][1], "path_tidy(%s) = %s", cases[i][0], t);
		free(t);
	}
}

Test(openfile, strerror_names_the_kind)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/root/fifo", dir);
	cr_assert_str_eq(open_strerror(AT_FDCWD, p, open_regular(p, NULL)), "a FIFO, not a regular file");
	cr_assert_str_eq(open_strerror(AT_FDCWD, "/dev/null", open_regular("/dev/null", NULL)),
			 "a character device, not a regular file");
	int root = root_fd();
	cr_assert_str_eq(open_strerror(root, "link", open_beneath(root, "link", NULL)),
			 "a symbolic link on the way (not followed)");
	cr_assert_str_eq(open_strerror(root, "../secret", open_beneath(root, "../secret", NULL)),
			 "outside its folder (an absolute path, \"..\" or an empty name)");
	cr_assert_str_eq(open_strerror(root, "nope", open_beneath(root, "nope", NULL)), "No such file or directory");
	close(root);
}

Test(openfile, safe_relative)
{
	cr_assert(path_is_safe_relative("a"));
	cr_assert(path_is_safe_relative("music/a b.mp3"));
	cr_assert(path_is_safe_relative("..a/b..")); /* names that only start with dots */
	cr_assert_not(path_is_safe_relative(NULL));
	cr_assert_not(path_is_safe_relative("/a"));
	cr_assert_not(path_is_safe_relative("a/"));
	cr_assert_not(path_is_safe_relative("./a"));
	cr_assert_not(path_is_safe_relative("a/.."));
	cr_assert_not(path_is_safe_relative("a\nb"));
	cr_assert_not(path_is_safe_relative("a\177b"));
}
