# Guest script: the harness's own proof, no usbforge needed (run-usb-e2e --smoke). Same shape
# as guest-usb-e2e.sh with busybox dd in place of usbforge: both sticks are USB disks with the
# expected identity; /img1.raw is written to stick 1 with O_DIRECT; a dd of /img2.raw to
# stick 2 fails (not hangs, not succeeds) when the host pulls stick 2 mid-write.
# Prints "FACT key=value" lines that run-usb-e2e checks on the host.
. /e2e/lib.sh

for n in 1 2; do
	serial=UFSTICK000$n
	dev=$(e2e_dev_by_serial $serial) || { e2e_fail "stick $serial present"; continue; }
	u=$(e2e_usb_dir "$dev")
	e2e_ok "stick $serial is $dev on USB port ${u##*/}"
	echo "FACT stick$n.dev=$dev stick$n.port=${u##*/} stick$n.speed=$(cat "$u/speed")"
	e2e_check "stick $serial: idVendor 46f4" [ "$(cat "$u/idVendor")" = 46f4 ]
	e2e_check "stick $serial: removable" [ "$(cat "/sys/block/${dev#/dev/}/removable")" = 1 ]
done
ls /sys/bus/usb/devices | tr '\n' ' '
echo

# Stick 1: a whole image with O_DIRECT; the host compares the backing file.
dev1=$(e2e_dev_by_serial UFSTICK0001)
t0=$(e2e_uptime_cs)
dd if=/img1.raw of="$dev1" bs=1M oflag=direct conv=fsync 2>/tmp/dd1.err
rc=$?
t1=$(e2e_uptime_cs)
echo "FACT write1.exit=$rc write1.centis=$((t1 - t0))"
e2e_check "dd of /img1.raw to $dev1 exits 0 (got $rc)" [ $rc = 0 ]

# Stick 2: pulled out by the host while dd writes.
dev2=$(e2e_dev_by_serial UFSTICK0002)
timeout 300 dd if=/img2.raw of="$dev2" bs=1M oflag=direct conv=fsync 2>/tmp/dd2.err &
pid=$!
if e2e_wait_io "$dev2" 1200; then
	e2e_ok "the write to $dev2 is under way"
	t0=$(e2e_uptime_cs)
	e2e_unplug stick2
else
	e2e_fail "the write to $dev2 started within 120 s"
fi
wait $pid
rc=$?
t1=$(e2e_uptime_cs)
echo "FACT remove.exit=$rc remove.centis=$((t1 - ${t0:-$t1}))"
cat /tmp/dd2.err
e2e_check "dd to the pulled stick failed, not hung, not succeeded (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 143
e2e_check "$dev2 is gone" e2e_wait_gone "$dev2" 600
e2e_summary
