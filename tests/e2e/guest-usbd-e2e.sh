# Guest script of the daemon's real-kernel end-to-end test (run by tests/e2e/run-usbd-e2e).
# In the guest: /bin/usbforged and /bin/usbforge, /etc/usbforge.conf (udev mode, slots A on port
# 2-1 and B on port 2-2, the database at 10.0.2.100:3306 = the host's private MariaDB through
# QEMU's one forwarded port, poll_interval 60 s so that only a hotplug event can make a new stick
# claimable within the test, retry delay 600 s so that a failed attempt is not retried here),
# /e2e/jobs (J1 and J2: the two queued jobs the host created, J1 the older; IMG1 and IMG2: their
# image paths on the host, under its /tmp, which the guest's /tmp hides: linked here to
# /e2e/img1.raw and /e2e/img2.raw). At boot only stick 1
# (UFSTICK0001, writes throttled) is in; stick 2 (UFSTICK0002, throttled less) is a spare the host
# plugs in when asked. Timeline and checks:
#   1. stick 1 is on port 2-1; the database answers through the forwarded port (usbforge jobs).
#   2. usbforged starts; J1 (the older job) is claimed for slot A and its write reaches stick 1.
#   3. "@@E2E-HOST mark-plug@@" (the host notes the server's time), then stick 2 is plugged in;
#      it appears on port 2-2 and J2 is claimed for slot B within 10 s of the plug request, its
#      write reaches the stick; "@@E2E-HOST snapshot-busy@@" (the host reads `devices`).
#   4. "@@E2E-HOST mark-unplug@@", then stick 1 is pulled mid-write: J1 leaves processing
#      (retry) within 15 s of the request.
#   5. J2 ends done; stick 2's USB device was reset exactly once (before verification), stick 1's
#      never; "@@E2E-HOST snapshot-idle@@", acknowledged by the host through an order
#      E2E-ACK-snapshot-idle the guest waits for (so the snapshot is taken while the daemon runs).
#   6. SIGTERM: usbforged exits 0 (ASan/LSan clean), and logged the removal exactly once.
# The host then checks the database (run-usbd-e2e). Lines "FACT k=v …" carry figures to the host.
. /e2e/lib.sh
. /e2e/jobs
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
UF="usbforge --config /etc/usbforge.conf"
mkdir -p "${IMG1%/*}" "${IMG2%/*}"
ln -s /e2e/img1.raw "$IMG1"
ln -s /e2e/img2.raw "$IMG2"

# job_field ID FIELD: a scalar field of `usbforge --json job show ID` (empty when unavailable).
job_field() {
	$UF --json job show "$1" 2>/dev/null | sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" | head -n 1
}
# wait_job ID FIELD VALUE TENTHS: poll until FIELD of job ID is VALUE; 1 after the bound.
wait_job() {
	t_end=$(($(e2e_uptime_cs) + $4 * 10))
	while [ "$(job_field "$1" "$2")" != "$3" ]; do
		[ "$(e2e_uptime_cs)" -ge $t_end ] && return 1
		sleep 0.1
	done
	return 0
}
# wait_serial SERIAL TENTHS: print the disk of SERIAL once it is there; 1 after the bound.
wait_serial() {
	i=0
	while [ $i -lt "$2" ]; do
		e2e_dev_by_serial "$1" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
# host_ack WORD: ask the host to run its WORD step and wait (10 s at most) for its acknowledgement.
host_ack() {
	echo "@@E2E-HOST $1@@"
	i=0
	while [ $i -lt 100 ]; do
		$UF order show "E2E-ACK-$1" >/dev/null 2>&1 && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
port_of() {
	u=$(e2e_usb_dir "$1") || return 1
	echo "${u##*/}"
}

# 1. stick 1 and the database
dev1=$(e2e_dev_by_serial UFSTICK0001)
port1=$(port_of "$dev1")
echo "FACT stick1.dev=$dev1 stick1.port=$port1"
e2e_check "stick UFSTICK0001 is ${dev1:-missing} on USB port ${port1:-?} (want 2-1, slot A)" [ "$port1" = 2-1 ]
e2e_check "only stick 1 is in at boot ($(ls -d /sys/block/sd* | wc -l) disk(s))" [ "$(ls -d /sys/block/sd* | wc -l)" = 1 ]
e2e_check "the database answers through the forwarded port (usbforge jobs)" $UF jobs

# 2. the daemon takes J1 on slot A
usbforged --config /etc/usbforge.conf >/tmp/d.log 2>&1 &
dpid=$!
t0=$(e2e_uptime_cs)
wait_job "$J1" status processing 300
e2e_check "job $J1 is processing within 30 s of the daemon's start" [ "$(job_field "$J1" status)" = processing ]
e2e_check "job $J1 is on slot A (got $(job_field "$J1" slot))" [ "$(job_field "$J1" slot)" = A ]
e2e_check "the write of job $J1 reaches $dev1" e2e_wait_io "$dev1" 300
echo "FACT claim1.centis=$(($(e2e_uptime_cs) - t0))"

# 3. stick 2 plugged in: claimable at once
echo "@@E2E-HOST mark-plug@@"
t0=$(e2e_uptime_cs)
e2e_plug stick2
dev2=$(wait_serial UFSTICK0002 200)
t_dev=$(e2e_uptime_cs)
port2=$(port_of "$dev2")
echo "FACT stick2.dev=$dev2 stick2.port=$port2 plug.dev_centis=$((t_dev - t0))"
e2e_check "stick UFSTICK0002 appeared as ${dev2:-nothing} on port ${port2:-?} (want 2-2, slot B)" [ "$port2" = 2-2 ]
wait_job "$J2" status processing 100
t_claim=$(e2e_uptime_cs)
echo "FACT plug.claim_centis=$((t_claim - t0))"
e2e_check "job $J2 is processing within 10 s of the plug request (took $((t_claim - t0))0 ms)" \
	[ "$(job_field "$J2" status)" = processing ]
e2e_check "job $J2 is on slot B (got $(job_field "$J2" slot))" [ "$(job_field "$J2" slot)" = B ]
e2e_check "the write of job $J2 reaches $dev2" e2e_wait_io "$dev2" 200
e2e_check "job $J1 is still writing on slot A (stage $(job_field "$J1" stage))" [ "$(job_field "$J1" stage)" = writing ]
echo "@@E2E-HOST snapshot-busy@@"

# 4. stick 1 pulled mid-write
resets1=$(dmesg | grep -c "usb $port1: reset")
resets2=$(dmesg | grep -c "usb $port2: reset")
echo "@@E2E-HOST mark-unplug@@"
t0=$(e2e_uptime_cs)
e2e_unplug stick1
wait_job "$J1" status retry 300
t1=$(e2e_uptime_cs)
echo "FACT gone.centis=$((t1 - t0)) j2.stage_at_gone=$(job_field "$J2" stage)"
e2e_check "job $J1 is back to retry within 15 s of the removal (took $((t1 - t0))0 ms)" \
	[ "$(job_field "$J1" status)" = retry -a $((t1 - t0)) -le 1500 ]
e2e_check "job $J1 ended with DEVICE_GONE (got $(job_field "$J1" error_code))" [ "$(job_field "$J1" error_code)" = DEVICE_GONE ]
e2e_check "$dev1 is gone" e2e_wait_gone "$dev1" 100

# 5. J2 ends done, with one reset before verification
wait_job "$J2" status done 600
e2e_check "job $J2 is done (status $(job_field "$J2" status), error $(job_field "$J2" error_code))" \
	[ "$(job_field "$J2" status)" = done ]
r1=$(($(dmesg | grep -c "usb $port1: reset") - resets1))
r2=$(($(dmesg | grep -c "usb $port2: reset") - resets2))
echo "FACT j2.resets=$r2 j1.resets=$r1"
e2e_check "stick 2 was reset exactly once before verification (got $r2)" [ "$r2" = 1 ]
e2e_check "stick 1 was not reset (got $r1)" [ "$r1" = 0 ]
e2e_check "the host took the idle snapshot while the daemon runs" host_ack snapshot-idle

# 6. stop
kill -TERM $dpid
wait $dpid
drc=$?
sed 's/^/usbforged| /' /tmp/d.log
e2e_check "usbforged exits 0 on SIGTERM (got $drc)" [ "$drc" = 0 ]
n=$(grep -c "removed while busy" /tmp/d.log)
e2e_check "usbforged logged the removal of stick 1 exactly once (got $n)" [ "$n" = 1 ]
n=$(grep -c "Sanitizer" /tmp/d.log)
e2e_check "no sanitizer report from usbforged (got $n lines)" [ "$n" = 0 ]
e2e_summary
