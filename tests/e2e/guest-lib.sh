# Helpers for guest scripts of the e2e harness (busybox sh), installed in the guest as
# /e2e/lib.sh: `. /e2e/lib.sh`. The host (tests/e2e/run-guest) attaches the sticks in order with
# serials UFSTICK0001, UFSTICK0002, … and QEMU ids stick1, stick2, …, and watches the serial
# console for "@@E2E-UNPLUG stickN@@" lines, on which it removes that stick (QMP device_del), and
# "@@E2E-PLUG stickN@@" lines, on which it plugs spare stick N in (blockdev-add + device_add).

# e2e_dev_by_serial SERIAL: print /dev/sdX of the USB disk whose usb_device has SERIAL; 1 if none.
e2e_dev_by_serial() {
	for b in /sys/block/sd*; do
		[ -e "$b" ] || continue
		d=$(readlink -f "$b/device")
		while [ -n "$d" ] && [ "$d" != / ] && [ "$d" != /sys ]; do
			if [ -f "$d/serial" ] && [ -f "$d/idVendor" ]; then
				if [ "$(cat "$d/serial")" = "$1" ]; then
					echo "/dev/${b##*/}"
					return 0
				fi
				break
			fi
			d=${d%/*}
		done
	done
	return 1
}

# e2e_usb_dir DEV: print the sysfs directory of the usb_device above block device DEV (/dev/sdX).
e2e_usb_dir() {
	d=$(readlink -f "/sys/block/${1##*/}/device")
	while [ -n "$d" ] && [ "$d" != /sys ]; do
		[ -f "$d/idVendor" ] && { echo "$d"; return 0; }
		d=${d%/*}
	done
	return 1
}

# e2e_unplug ID: ask the host to remove stick ID (stick1, stick2, …) now.
e2e_unplug() {
	echo "@@E2E-UNPLUG $1@@"
}

# e2e_plug ID: ask the host to plug in spare stick ID (run-guest --spare) now.
e2e_plug() {
	echo "@@E2E-PLUG $1@@"
}

# e2e_throttle ID BPS: ask the host to set spare stick ID's write limit to BPS bytes/s (run-guest
# --spare … --throttle): a write held back by a low limit is released with a high one.
e2e_throttle() {
	echo "@@E2E-THROTTLE $1 $2@@"
}

# e2e_wait_until TENTHS COMMAND…: run COMMAND every 0.1 s until it succeeds; 0 when it did, 1
# when TENTHS × 0.1 s of guest uptime passed first. Every wait of a test is on a state (a device
# node, a job row, a log line) through this, with a bound generous enough for a TCG guest on a
# busy host: the bound says "never", not "too slow".
e2e_wait_until() {
	_e2e_end=$(($(e2e_uptime_cs) + $1 * 10))
	shift
	until "$@"; do
		[ "$(e2e_uptime_cs)" -ge "$_e2e_end" ] && return 1
		sleep 0.1
	done
	return 0
}

# e2e_sectors_written DEV: print DEV's count of sectors written (stat field 7; 0 when unknown).
e2e_sectors_written() {
	set -- $(cat "/sys/block/${1##*/}/stat" 2>/dev/null)
	echo "${7:-0}"
}

# e2e_written DEV [SINCE]: 0 when DEV has completed writes beyond SINCE sectors (default 0).
e2e_written() {
	[ "$(e2e_sectors_written "$1")" -gt "${2:-0}" ]
}

# e2e_absent PATH: 0 when PATH does not exist.
e2e_absent() {
	[ ! -e "$1" ]
}

# e2e_wait_io DEV TENTHS [SINCE]: wait until DEV has completed writes (sectors written >
# SINCE, default 0: a write is under way and has reached the disk); 0 when it did, 1 after
# TENTHS × 0.1 s. SINCE: e2e_sectors_written taken when the write of interest began (a job's
# validation writes to the stick before its image does).
e2e_wait_io() {
	e2e_wait_until "$2" e2e_written "$1" "${3:-0}"
}

# e2e_wait_gone DEV TENTHS: wait until DEV has disappeared; 0 when it did, 1 after the bound.
e2e_wait_gone() {
	e2e_wait_until "$2" e2e_absent "/sys/block/${1##*/}"
}

# e2e_kmsg_count PATTERN: print how many kernel log lines since boot contain PATTERN. Exit 1,
# printing nothing, when the kernel's ring buffer no longer starts at boot (its first line is
# not the "Linux version" banner): a count that may have lost lines is no count.
e2e_kmsg_count() {
	_e2e_k=$(dmesg) || return 1
	case $(printf '%s\n' "$_e2e_k" | head -n 1) in
	*"Linux version "*) ;;
	*) return 1 ;;
	esac
	printf '%s\n' "$_e2e_k" | grep -c -- "$1" || true
}

# Test bookkeeping: e2e_check DESCRIPTION COMMAND… runs COMMAND, prints "ok"/"FAIL" lines and
# counts failures in E2E_FAILS; e2e_summary prints the totals and returns 1 on any failure.
E2E_FAILS=0
E2E_CHECKS=0
e2e_ok() { E2E_CHECKS=$((E2E_CHECKS + 1)); echo "ok   - $*"; }
e2e_fail() { E2E_CHECKS=$((E2E_CHECKS + 1)); E2E_FAILS=$((E2E_FAILS + 1)); echo "FAIL - $*"; }
e2e_check() {
	desc=$1
	shift
	if "$@"; then e2e_ok "$desc"; else e2e_fail "$desc"; fi
}
e2e_summary() {
	echo "guest checks: $E2E_CHECKS, failed: $E2E_FAILS"
	[ "$E2E_FAILS" -eq 0 ]
}

# e2e_uptime_cs: the guest's uptime in hundredths of a second (for durations).
e2e_uptime_cs() {
	read -r up _ </proc/uptime
	echo "${up%.*}${up#*.}"
}
