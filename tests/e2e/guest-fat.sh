# Guest script of the FAT32 oracle (tests/e2e/run-fat-e2e): the Linux vfat driver reads the
# composed sticks. For each stick UFSTICK000N attached (read-only) by the host, mounts its first
# partition with `-t vfat -o ro,utf8` and prints, between "@@STAT-BEGIN stickN@@" and
# "@@STAT-END stickN@@", one line per entry below the mount point, "TYPE<TAB>size<TAB>mtime<TAB>
# ./path" (TYPE as stat %F: "directory", "regular file", "regular empty file"; the path as the
# kernel decodes it to UTF-8; mtime in seconds since the epoch, the guest's zone being UTC),
# between "@@SHA-BEGIN stickN@@" and "@@SHA-END stickN@@" sha256sum's "HASH  ./path" lines,
# then "STATFS stickN blocks=… free=… bsize=…" and
# any "FAT-fs" kernel message as "KMSG …". Names are read with find (busybox ls prints "?" for
# non-ASCII). The host compares everything; this script only says what the kernel sees.
. /e2e/lib.sh

rc=0
fmt=$(printf '%%F\t%%s\t%%Y\t%%n') # type, size, mtime, ./path (tab-separated)
for n in 1 2 3 4 5 6 7 8; do
	serial=UFSTICK000$n
	dev=$(e2e_dev_by_serial $serial) || break
	part=${dev}1
	mnt=/mnt/stick$n
	mkdir -p "$mnt"
	# The disk's node comes before the kernel has read its partition table: wait for the
	# partition's node (generously; it says "never", not "slow").
	if ! e2e_wait_until 600 [ -b "$part" ]; then
		echo "FAIL - no partition node $part (stick $n) within 60 s"
		rc=1
		continue
	fi
	if ! mount -t vfat -o ro,utf8 "$part" "$mnt"; then
		echo "FAIL - mount -t vfat -o ro,utf8 $part (stick $n)"
		rc=1
		continue
	fi
	echo "ok   - stick $n: $part mounted read-only (vfat, utf8)"
	# Two passes with few processes (every fork is slow under TCG): the metadata, then the
	# hashes; the host joins them by path.
	echo "@@STAT-BEGIN stick$n@@"
	(cd "$mnt" && find . -mindepth 1 -exec stat -c "$fmt" {} +) || { echo "FAIL - find/stat"; rc=1; }
	echo "@@STAT-END stick$n@@"
	echo "@@SHA-BEGIN stick$n@@"
	(cd "$mnt" && find . -type f -exec sha256sum {} +) || { echo "FAIL - find/sha256sum"; rc=1; }
	echo "@@SHA-END stick$n@@"
	echo "STATFS stick$n $(stat -f -c 'blocks=%b free=%f bsize=%S' "$mnt")"
	umount "$mnt" || { echo "FAIL - umount $mnt"; rc=1; }
done
dmesg | grep -a 'FAT-fs' | sed 's/^/KMSG /'
exit $rc
