# Guest script of the daemon's real-kernel end-to-end test (run by tests/e2e/run-usbd-e2e).
# In the guest: /bin/usbforged and /bin/usbforge, /etc/usbforge.conf (udev mode, slots A on port
# 2-1 and B on port 2-2, the database at 10.0.2.100:3306 = the host's private MariaDB through
# QEMU's one forwarded port, poll_interval longer than the guest lives so that only a hotplug
# event can make a new stick claimable, retry delay 600 s so that a failed attempt is not retried
# here), /e2e/jobs (J1 and J2: the two queued jobs the host created, J1 the older; IMG1 and IMG2:
# their image paths on the host, under its /tmp, which the guest's /tmp hides: bind-mounted
# here from /e2e/img1.raw and /e2e/img2.raw, since the daemon follows no symlink beneath
# content.images; RELEASE2: the write limit that releases stick 2). At boot
# only stick 1 (UFSTICK0001) is in, its writes throttled so that J1 cannot end within the
# guest's time limit: it is certainly still writing when it is pulled. Stick 2 (UFSTICK0002) is
# a spare the host plugs in when asked, its writes held back by a low limit until this script
# releases them (e2e_throttle): J2 cannot reach verification before stick 1 is out. Every wait
# is on a state (a job row, a device node, a log line) with a generous bound. Timeline and
# checks:
#   1. stick 1 is on port 2-1; the database answers through the forwarded port (usbforge jobs).
#   2. usbforged starts; J1 (the older job) is claimed for slot A, passes validation (whose
#      capacity probe writes to the stick and resets it) and its image write reaches stick 1.
#   3. "@@E2E-HOST mark-plug@@" (the host notes the server's time), then stick 2 is plugged in;
#      it appears on port 2-2 and J2 is claimed for slot B (the host checks from SQL that this
#      came within 120 s of the plug request and before the removal), passes validation, and the
#      USB reset counts are taken (neither job can reach verification now); its image write
#      reaches the stick; both jobs still writing: "@@E2E-HOST snapshot-busy@@" (the host waits
#      until `devices` shows both slots busy, then reads it).
#   4. "@@E2E-HOST mark-unplug@@", then stick 1 is pulled mid-write: J1 leaves processing
#      (retry, DEVICE_GONE) within 60 s of the request (the stall timeout is 120 s); its disk and
#      its USB device leave sysfs. Then stick 2's writes are released.
#   5. J2 ends done; since the baselines, stick 2's USB device was reset exactly once (before
#      verification), stick 1's never (kernel log, checked to reach back to boot so that no line
#      was lost); "@@E2E-HOST snapshot-idle@@",
#      acknowledged by the host through an order E2E-ACK-snapshot-idle the guest waits for (so
#      the snapshot is taken while the daemon runs).
#   6. SIGTERM: usbforged exits 0 (ASan/LSan clean), and logged the removal exactly once.
# The host then checks the database (run-usbd-e2e). Lines "FACT k=v …" carry figures to the host.
. /e2e/lib.sh
. /e2e/jobs
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
UF="usbforge --config /etc/usbforge.conf"
mkdir -p "${IMG1%/*}" "${IMG2%/*}"
touch "$IMG1" "$IMG2"
e2e_check "the images are bind-mounted at their host paths" mount --bind /e2e/img1.raw "$IMG1"
e2e_check "the second image too" mount --bind /e2e/img2.raw "$IMG2"

# job_field ID FIELD: a scalar field of `usbforge --json job show ID` (empty when unavailable).
job_field() {
	$UF --json job show "$1" 2>/dev/null | sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" | head -n 1
}
# job_is ID FIELD VALUE: 0 when FIELD of job ID is VALUE.
job_is() {
	[ "$(job_field "$1" "$2")" = "$3" ]
}
# wait_job ID FIELD VALUE TENTHS: poll until FIELD of job ID is VALUE; 1 after the bound.
wait_job() {
	e2e_wait_until "$4" job_is "$1" "$2" "$3"
}
# wait_serial SERIAL TENTHS: print the disk of SERIAL once it is there; 1 after the bound.
wait_serial() {
	e2e_wait_until "$2" e2e_dev_by_serial "$1" >/dev/null && e2e_dev_by_serial "$1"
}
# host_ack WORD: ask the host to run its WORD step and wait (120 s at most) for its
# acknowledgement, an order E2E-ACK-WORD.
host_acked() {
	$UF order show "E2E-ACK-$1" >/dev/null 2>&1
}
host_ack() {
	echo "@@E2E-HOST $1@@"
	e2e_wait_until 1200 host_acked "$1"
}
db_answers() {
	$UF jobs >/dev/null 2>&1
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
e2e_check "the database answers through the forwarded port (usbforge jobs)" e2e_wait_until 600 db_answers
$UF jobs

# 2. the daemon takes J1 on slot A
usbforged --config /etc/usbforge.conf >/tmp/d.log 2>&1 &
dpid=$!
t0=$(e2e_uptime_cs)
e2e_check "job $J1 is processing (bound 120 s from the daemon's start)" wait_job "$J1" status processing 1200
e2e_check "job $J1 is on slot A (got $(job_field "$J1" slot))" [ "$(job_field "$J1" slot)" = A ]
# Validation (the capacity probe, with its own USB reset) writes to the stick first: the image
# write is the one that comes after the job's stage is writing.
e2e_check "job $J1 reaches its writing stage" wait_job "$J1" stage writing 1200
w1=$(e2e_sectors_written "$dev1")
e2e_check "the image write of job $J1 reaches $dev1" e2e_wait_io "$dev1" 1200 "$w1"
echo "FACT claim1.centis=$(($(e2e_uptime_cs) - t0))"

# 3. stick 2 plugged in: claimable at once
echo "@@E2E-HOST mark-plug@@"
t0=$(e2e_uptime_cs)
e2e_plug stick2
dev2=$(wait_serial UFSTICK0002 1200)
t_dev=$(e2e_uptime_cs)
port2=$(port_of "$dev2")
echo "FACT stick2.dev=$dev2 stick2.port=$port2 plug.dev_centis=$((t_dev - t0))"
e2e_check "stick UFSTICK0002 appeared as ${dev2:-nothing} on port ${port2:-?} (want 2-2, slot B)" [ "$port2" = 2-2 ]
wait_job "$J2" status processing 1200
t_claim=$(e2e_uptime_cs)
echo "FACT plug.claim_centis=$((t_claim - t0))"
e2e_check "job $J2 is processing after the plug request (took $((t_claim - t0))0 ms; the host checks the bound)" \
	[ "$(job_field "$J2" status)" = processing ]
e2e_check "job $J2 is on slot B (got $(job_field "$J2" slot))" [ "$(job_field "$J2" slot)" = B ]
e2e_check "job $J2 reaches its writing stage" wait_job "$J2" stage writing 1200
w2=$(e2e_sectors_written "$dev2")
# The reset baselines: both jobs are past validation (whose capacity probe resets the stick
# once) and neither can reach verification (J1 cannot end its write, J2's is held back until
# stick 1 is out): the one reset still to come is J2's before verification.
resets1=$(e2e_kmsg_count "usb $port1: reset") || resets1=unknown
resets2=$(e2e_kmsg_count "usb $port2: reset") || resets2=unknown
echo "FACT probe.resets1=$resets1 probe.resets2=$resets2"
e2e_check "the image write of job $J2 reaches $dev2" e2e_wait_io "$dev2" 1200 "$w2"
e2e_check "job $J1 is still writing on slot A (stage $(job_field "$J1" stage))" [ "$(job_field "$J1" stage)" = writing ]
e2e_check "job $J2 is still writing on slot B, held back (stage $(job_field "$J2" stage))" [ "$(job_field "$J2" stage)" = writing ]
echo "@@E2E-HOST snapshot-busy@@"

# 4. stick 1 pulled mid-write
echo "@@E2E-HOST mark-unplug@@"
t0=$(e2e_uptime_cs)
e2e_unplug stick1
wait_job "$J1" status retry 1200
t1=$(e2e_uptime_cs)
echo "FACT gone.centis=$((t1 - t0)) j2.stage_at_gone=$(job_field "$J2" stage)"
e2e_check "job $J1 is back to retry within 60 s of the removal (took $((t1 - t0))0 ms)" \
	[ "$(job_field "$J1" status)" = retry -a $((t1 - t0)) -le 6000 ]
e2e_check "job $J1 ended with DEVICE_GONE (got $(job_field "$J1" error_code))" [ "$(job_field "$J1" error_code)" = DEVICE_GONE ]
e2e_check "$dev1 is gone" e2e_wait_gone "$dev1" 600
# The USB device leaves sysfs after its removal uevent was sent: from here on the daemon has it.
e2e_check "stick 1's USB device $port1 is gone" e2e_wait_until 600 e2e_absent "/sys/bus/usb/devices/$port1"
e2e_throttle stick2 "$RELEASE2"

# 5. J2 ends done, with one reset before verification (kernel log lines since the baselines,
# which the kernel's ring buffer still holds: it reaches back to boot)
wait_job "$J2" status done 2400
e2e_check "job $J2 is done (status $(job_field "$J2" status), error $(job_field "$J2" error_code))" \
	[ "$(job_field "$J2" status)" = done ]
n2=$(e2e_kmsg_count "usb $port2: reset") || n2=unknown
n1=$(e2e_kmsg_count "usb $port1: reset") || n1=unknown
if [ "$resets1$resets2$n1$n2" -ge 0 ] 2>/dev/null; then
	r2=$((n2 - resets2)) r1=$((n1 - resets1))
	e2e_ok "the kernel log reaches back to boot: the reset counts are exact"
else
	r2=unknown r1=unknown
	e2e_fail "the kernel log no longer reaches back to boot: no exact reset count"
fi
echo "FACT j2.resets=$r2 j1.resets=$r1"
e2e_check "stick 2 was reset exactly once before verification (got $r2)" [ "$r2" = 1 ]
e2e_check "stick 1 was not reset after its probe (got $r1)" [ "$r1" = 0 ]
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
