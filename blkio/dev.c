/* The device table's real implementation: block devices and regular files opened with
 * O_DIRECT|O_CLOEXEC (O_EXCL for a block device opened for writing). Owns the file descriptor,
 * the full-length read/write loops, cache dropping and the reopen after a reset hook (the USB
 * port reset of udev mode). Also the helpers of blkio/dev.h shared by every implementation
 * (dev_free, dev_alloc_buf, dev_alloc_buf_filled, dev_errno_is_gone, dev_gone, dev_error_code,
 * dev_set_reset_hook). */
#include "blkio/dev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/macro.h"

struct dev_fd {
	struct dev base;
	int fd;
	char *path;	/* what to reopen after a reset */
	unsigned flags; /* DEV_OPEN_* as given */
	dev_t rdev;	/* block devices: the device number, to notice removal */
	dev_reset_hook_t hook;
	void *hook_userdata;
};

static const struct dev_ops dev_fd_ops;

/* An opened descriptor and what it measures. */
struct dev_geom {
	int fd;
	bool is_block;
	uint64_t size;
	unsigned block_size;
	dev_t rdev;
};

static unsigned file_block_size(int fd, const struct stat *st)
{
	unsigned bs = 4096;
#ifdef STATX_DIOALIGN
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN)) {
		bs = MAX(bs, stx.stx_dio_offset_align);
		bs = MAX(bs, stx.stx_dio_mem_align);
	}
#endif
	/* A power-of-two st_blksize above 4096 (e.g. 64k-block file systems) is a requirement
	 * of some O_DIRECT implementations; smaller values are already covered. */
	if (st->st_blksize > 4096 && st->st_blksize <= (1 << 20) &&
	    ((unsigned)st->st_blksize & ((unsigned)st->st_blksize - 1)) == 0)
		bs = MAX(bs, (unsigned)st->st_blksize);
	return bs;
}

static int open_geom(const char *path, unsigned flags, struct dev_geom *ret)
{
	bool write = flags & DEV_OPEN_WRITE;
	struct stat st;

	if (stat(path, &st) < 0)
		return negative_errno();
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode))
		return -ENOTBLK;

	bool is_block = S_ISBLK(st.st_mode);
	/* O_NONBLOCK: should the path have become a FIFO since the stat, the open must not wait
	 * for a writer; the descriptor is checked below and made blocking again. */
	int oflags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	if (is_block && write)
		oflags |= O_EXCL;
	bool direct = !(flags & DEV_OPEN_NO_DIRECT);

	_cleanup_close_ int fd = open(path, oflags | (direct ? O_DIRECT : 0));
	if (fd < 0 && errno == EINVAL && direct && !is_block) {
		/* A file system without O_DIRECT (tmpfs on old kernels): buffered I/O on a
		 * regular file is still exact, only slower. */
		fd = open(path, oflags);
	}
	if (fd < 0)
		return negative_errno();

	/* Re-check on the descriptor: the path may have been replaced meanwhile. */
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (S_ISBLK(st.st_mode) != is_block || (!is_block && !S_ISREG(st.st_mode)))
		return -ENOTBLK;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return negative_errno();
	/* A regular file has no O_EXCL: whoever writes it holds an exclusive flock on it for as
	 * long as the descriptor lives (a reader a shared one), so that two writers (two daemons
	 * with the same slot, `usbforge write` on a slot being written) never interleave. */
	if (!is_block && flock(fd, (write ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : negative_errno();

	struct dev_geom g = { .is_block = is_block };
	if (is_block) {
		uint64_t size;
		int ssz, ro = 0;
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			return negative_errno();
		if (ioctl(fd, BLKSSZGET, &ssz) < 0)
			return negative_errno();
		if (ssz <= 0)
			return -EIO;
		if (ioctl(fd, BLKROGET, &ro) < 0)
			return negative_errno();
		if (ro && write)
			return -EROFS;
		g.size = size;
		g.block_size = (unsigned)ssz;
		g.rdev = st.st_rdev;
	} else {
		g.size = (uint64_t)st.st_size;
		g.block_size = file_block_size(fd, &st);
	}
	g.fd = TAKE_FD(fd);
	*ret = g;
	return 0;
}

/* EIO from a block device whose sysfs entry vanished means the device was pulled. */
static int block_error(struct dev_fd *d, int r)
{
	if (!d->base.is_block || r != -EIO)
		return r;
	char *p = NULL;
	if (asprintf(&p, "/sys/dev/block/%u:%u", major(d->rdev), minor(d->rdev)) < 0)
		return r;
	int gone = access(p, F_OK) < 0 && errno == ENOENT;
	free(p);
	return gone ? -ENODEV : r;
}

static int dev_fd_pread(struct dev *base, void *buf, size_t len, uint64_t off)
{
	struct dev_fd *d = (struct dev_fd *)base;
	uint8_t *p = buf;
	size_t done = 0;

	if (d->fd < 0)
		return -ENODEV;
	while (done < len) {
		ssize_t n = pread(d->fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return block_error(d, -errno);
		}
		if (n == 0) {
			if (base->is_block)
				return block_error(d, -EIO);
			/* Past the end of a regular file: the rest reads as zeros. */
			memset(p + done, 0, len - done);
			return 0;
		}
		done += (size_t)n;
	}
	return 0;
}

static int dev_fd_pwrite(struct dev *base, const void *buf, size_t len, uint64_t off)
{
	struct dev_fd *d = (struct dev_fd *)base;
	const uint8_t *p = buf;
	size_t done = 0;

	if (d->fd < 0)
		return -ENODEV;
	if (!(d->flags & DEV_OPEN_WRITE))
		return -EBADF;
	while (done < len) {
		ssize_t n = pwrite(d->fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return block_error(d, -errno);
		}
		if (n == 0)
			return block_error(d, -EIO);
		done += (size_t)n;
	}
	return 0;
}

static int dev_fd_sync(struct dev *base)
{
	struct dev_fd *d = (struct dev_fd *)base;
	struct stat st;
	if (d->fd < 0)
		return -ENODEV;
	if (fdatasync(d->fd) < 0)
		return block_error(d, -errno);
	/* A regular file whose every name was removed is a stick that was pulled: what was
	 * written is in an inode nobody can reach any more. */
	if (!base->is_block && fstat(d->fd, &st) == 0 && st.st_nlink == 0)
		return -ENODEV;
	return 0;
}

static int dev_fd_reset(struct dev *base)
{
	struct dev_fd *d = (struct dev_fd *)base;
	int r;

	if (d->fd < 0)
		return -ENODEV;
	if (base->is_block) {
		/* BLKFLSBUF needs CAP_SYS_ADMIN; without it, dropping the page cache is what we
		 * can do (O_DIRECT reads bypass it anyway). */
		if (ioctl(d->fd, BLKFLSBUF, 0) < 0) {
			if (errno != EACCES && errno != EPERM)
				return block_error(d, -errno);
			r = posix_fadvise(d->fd, 0, 0, POSIX_FADV_DONTNEED);
			if (r != 0)
				return block_error(d, -r);
		}
	} else {
		if (fdatasync(d->fd) < 0)
			return -errno;
		r = posix_fadvise(d->fd, 0, 0, POSIX_FADV_DONTNEED);
		if (r != 0)
			return -r;
	}
	if (!d->hook)
		return 0;

	/* The hook may re-enumerate the device: our O_EXCL descriptor must not be held. */
	close(d->fd);
	d->fd = -1;

	_cleanup_free_ char *new_path = NULL;
	r = d->hook(d->hook_userdata, d->path, &new_path);
	if (r < 0)
		return r;
	if (new_path) {
		free(d->path);
		d->path = TAKE_PTR(new_path);
	}

	struct dev_geom g;
	r = open_geom(d->path, d->flags, &g);
	if (r < 0)
		return r;
	if (g.is_block != base->is_block || g.size != base->size || g.block_size != base->block_size) {
		/* Not the same medium any more. */
		close(g.fd);
		return -ENODEV;
	}
	d->fd = g.fd;
	d->rdev = g.rdev;
	return 0;
}

static void dev_fd_free(struct dev *base)
{
	struct dev_fd *d = (struct dev_fd *)base;
	if (d->fd >= 0)
		close(d->fd);
	free(d->path);
	free(base->name);
	free(d);
}

static const struct dev_ops dev_fd_ops = {
	.pread = dev_fd_pread,
	.pwrite = dev_fd_pwrite,
	.sync = dev_fd_sync,
	.reset = dev_fd_reset,
	.free = dev_fd_free,
};

int dev_open(const char *path, unsigned flags, struct dev **ret)
{
	struct dev_geom g;
	int r;

	if (!path || !ret)
		return -EINVAL;
	r = open_geom(path, flags, &g);
	if (r < 0)
		return r;

	struct dev_fd *d = calloc(1, sizeof(*d));
	if (!d) {
		close(g.fd);
		return -ENOMEM;
	}
	d->base.ops = &dev_fd_ops;
	d->base.name = strdup(path);
	d->path = strdup(path);
	if (!d->base.name || !d->path) {
		d->fd = g.fd;
		dev_fd_free(&d->base);
		return -ENOMEM;
	}
	d->base.size = g.size;
	d->base.block_size = g.block_size;
	d->base.is_block = g.is_block;
	d->fd = g.fd;
	d->flags = flags;
	d->rdev = g.rdev;
	*ret = &d->base;
	return 0;
}

/* The dev_fd under any wrappers, or NULL when the innermost device is not one. */
static struct dev_fd *innermost(struct dev *d)
{
	while (d && d->ops != &dev_fd_ops)
		d = d->ops->inner ? d->ops->inner(d) : NULL;
	return (struct dev_fd *)d;
}

void dev_set_reset_hook(struct dev *d, dev_reset_hook_t hook, void *userdata)
{
	struct dev_fd *f = innermost(d);
	if (!f)
		return;
	f->hook = hook;
	f->hook_userdata = userdata;
}

struct dev *dev_free(struct dev *d)
{
	if (d)
		d->ops->free(d);
	return NULL;
}

void *dev_alloc_buf(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? ALIGN_UP(len, 4096) : 4096) != 0)
		return NULL;
	return p;
}

void *dev_alloc_buf_filled(size_t len)
{
	const size_t huge = (size_t)2 << 20;
	void *p = NULL;

	if (len < huge)
		return dev_alloc_buf(len);
	/* An I/O buffer of 2 MiB or more: align it to 2 MiB and ask for transparent huge pages.
	 * O_DIRECT pins the buffer's pages for every request (get_user_pages, one bio segment
	 * per page) and the kernel copies the image into it: with 4 KiB pages, dropping that
	 * per-page work cut the CPU time of a write + verify to a memory-backed loop device by
	 * a quarter. The caller fills the buffer completely, so the huge page costs no memory
	 * (for a 64 KiB image the zeroing of 2 MiB huge pages at their first touch was a third
	 * of a daemon's CPU time per job: bench/jobcost).
	 * The hint is advice only: where THP is off or no huge page is free, this is an ordinary
	 * buffer. */
	if (posix_memalign(&p, huge, ALIGN_UP(len, 4096)) != 0)
		return NULL;
	(void)madvise(p, ALIGN_DOWN(len, huge), MADV_HUGEPAGE);
	return p;
}

bool dev_errno_is_gone(int r)
{
	if (r < 0)
		r = -r;
	return r == ENODEV || r == ENXIO || r == ENOMEDIUM || r == ESHUTDOWN;
}

int dev_stat(struct dev *d, struct stat *ret)
{
	struct dev_fd *f = innermost(d);
	struct stat st;

	if (!f || f->fd < 0)
		return -ENODEV;
	if (fstat(f->fd, &st) < 0)
		return negative_errno();
	*ret = st;
	return 0;
}

bool dev_gone(struct dev *d, int r)
{
	struct dev_fd *f = innermost(d);
	struct stat open_st, now;

	if (dev_errno_is_gone(r) || r == -ENOENT)
		return true;
	if (!d || !f || f->fd < 0 || fstat(f->fd, &open_st) < 0)
		return false;
	if (!d->is_block && open_st.st_nlink == 0)
		return true;
	if (stat(f->path, &now) < 0)
		return errno == ENOENT || errno == ENODEV || errno == ENXIO;
	if (!d->is_block)
		return now.st_ino != open_st.st_ino || now.st_dev != open_st.st_dev;
	if (!S_ISBLK(now.st_mode) || now.st_rdev != open_st.st_rdev)
		return true;
	char sys[64];
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/size", major(now.st_rdev), minor(now.st_rdev));
	_cleanup_fclose_ FILE *sz = fopen(sys, "re");
	if (!sz)
		return errno == ENOENT;
	unsigned long long sectors;
	return fscanf(sz, "%llu", &sectors) == 1 && sectors == 0;
}

enum uf_code dev_error_code(struct dev *d, int r)
{
	if (r == 0)
		return UFC_NONE;
	if (r == -ECANCELED)
		return UFC_CANCELLED;
	if (dev_gone(d, r))
		return UFC_DEVICE_GONE;
	switch (-r) {
	case EROFS:
	case EPERM:
	case EACCES:
		return UFC_DEVICE_READ_ONLY;
	case EIO:
	case ENOSPC:
	case ETIMEDOUT:
	case EFBIG:
		return UFC_WRITE_IO;
	default:
		return UFC_PROCESSING_FAILED;
	}
}

enum uf_code dev_open_error_code(int r, unsigned flags)
{
	if (r == 0)
		return UFC_NONE;
	if (r == -EAGAIN || r == -EBUSY || r == -ENOTBLK)
		return UFC_DEVICE_UNSAFE;
	if (r == -EROFS || ((flags & DEV_OPEN_WRITE) && (r == -EPERM || r == -EACCES)))
		return UFC_DEVICE_READ_ONLY;
	if (dev_gone(NULL, r))
		return UFC_DEVICE_GONE;
	return UFC_WRITE_IO;
}

bool dev_unlinked(struct dev *d)
{
	struct stat st;
	return d && !d->is_block && dev_stat(d, &st) == 0 && st.st_nlink == 0;
}
