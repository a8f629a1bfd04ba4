# Guest script of the real-kernel USB end-to-end test (run by tests/e2e/run-usb-e2e).
# In the guest: /bin/usbforge, /etc/usbforge.conf (udev mode, no slots, verify + reset before
# verify), /img1.raw and /img2.raw; stick 1 (UFSTICK0001) and stick 2 (UFSTICK0002, its writes
# throttled by QEMU so that a write lasts). Checks:
#   1. `usbforge --json devices` exits 0; the JSON goes to the host between markers, which
#      checks both sticks: eligible, serial, vendor, model, devnode, port_path, usb_speed_mbps,
#      capacity, slot named after the port path.
#   2. `usbforge write --yes STICK1 /img1.raw` exits 0 after verification, with exactly one USB
#      reset of stick 1 (kernel log) and stick 1 back with its serial; the host compares the
#      backing file byte for byte. `usbforge verify` of stick 1 against /img1.raw exits 0, against
#      /img2.raw exits 1 with VERIFY_MISMATCH at offset 13 (the first differing byte).
#   3. `usbforge write --yes STICK2 /img2.raw` while the host pulls stick 2 (QMP device_del)
#      exits 1 with DEVICE_GONE within 60 s of the removal (stall timeout 120 s, hard bound
#      300 s) — never a hang, never a success. Stick 2's writes are throttled so that the write
#      cannot end within the guest's time limit: it is certainly under way when it is pulled.
#   4. The hotplug watcher (/bin/uf_monitor_watch, usb/monitor.c: netlink + libusb hotplug,
#      libusb=1 on its ready line), listening from before step 2 on, printed exactly one
#      "usb_remove PORT2" and exactly one "remove sdX" for stick 2's removal (no event lost,
#      none twice), and nothing of stick 1's USB device leaving during its reset; it exits 0 on
#      SIGTERM (ASan leak check included). Counted once the watcher has printed a "change"
#      event of stick 1's disk triggered after the removals: the kernel's netlink messages
#      reach it in order, so every earlier one has been handled by then.
# Every wait is on a state (a device node, a line of output) with a generous bound.
. /e2e/lib.sh
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
UF="usbforge --config /etc/usbforge.conf"

for n in 1 2; do
	serial=UFSTICK000$n
	dev=$(e2e_dev_by_serial $serial) || { e2e_fail "stick $serial present"; continue; }
	u=$(e2e_usb_dir "$dev")
	e2e_ok "stick $serial is $dev on USB port ${u##*/}"
	echo "FACT stick$n.dev=$dev stick$n.port=${u##*/} stick$n.speed=$(cat "$u/speed")"
done
dev1=$(e2e_dev_by_serial UFSTICK0001)
dev2=$(e2e_dev_by_serial UFSTICK0002)
port1=$(e2e_usb_dir "$dev1")
port1=${port1##*/}
port2=$(e2e_usb_dir "$dev2")
port2=${port2##*/}

# 1. devices
$UF --json devices >/tmp/devices.json 2>/tmp/devices.err
rc=$?
e2e_check "usbforge --json devices exits 0 (got $rc)" [ $rc = 0 ]
cat /tmp/devices.err
echo "@@DEVICES-JSON-BEGIN@@"
cat /tmp/devices.json
echo
echo "@@DEVICES-JSON-END@@"
$UF devices 2>&1

# The hotplug watcher listens from here on (through the reset of stick 1 and the removal of
# stick 2); -v: its debug lines (a USB report dropped as already delivered) go to watch.err.
W=/tmp/watch.out
uf_monitor_watch -v 1200 >$W 2>/tmp/watch.err &
wpid=$!
e2e_wait_until 600 grep -q '^# ready' $W
e2e_check "uf_monitor_watch listens: $(head -n 1 $W 2>/dev/null)" grep -q '^# ready' $W
# Without libusb hotplug the monitor still runs on netlink alone; here it must have both.
e2e_check "the watcher has libusb hotplug (libusb=1 on its ready line)" grep -Eq '^# ready .*libusb=1( |$)' $W

# 2. write + reset + verify
resets0=$(e2e_kmsg_count "usb $port1: reset") || resets0=unknown
t0=$(e2e_uptime_cs)
$UF write --yes "$dev1" /img1.raw >/tmp/w1.out 2>&1
rc=$?
t1=$(e2e_uptime_cs)
cat /tmp/w1.out
e2e_check "usbforge write --yes $dev1 /img1.raw exits 0 (got $rc)" [ $rc = 0 ]
resets=$(e2e_kmsg_count "usb $port1: reset") || resets=unknown
# exact only while the kernel's ring buffer reaches back to boot (e2e_kmsg_count)
[ "$resets0" != unknown ] && [ "$resets" != unknown ] && resets=$((resets - resets0)) || resets=unknown
echo "FACT write1.exit=$rc write1.centis=$((t1 - t0)) write1.resets=$resets"
e2e_check "stick 1 was reset exactly once before verification (got $resets)" [ "$resets" = 1 ]
back=$(e2e_dev_by_serial UFSTICK0001)
e2e_check "stick 1 is back after the reset as $back" [ -n "$back" ]

# 2b. verify: the written stick matches its image, and not another one (img2 differs from img1
# from byte 13 on: "usbforge e2e one" vs "usbforge e2e two").
$UF verify "$back" /img1.raw >/tmp/v1.out 2>&1
rc=$?
cat /tmp/v1.out
e2e_check "usbforge verify $back /img1.raw exits 0 (got $rc)" [ $rc = 0 ]
$UF verify "$back" /img2.raw >/tmp/v2.out 2>&1
rc=$?
cat /tmp/v2.out
e2e_check "usbforge verify $back /img2.raw exits 1 (got $rc)" [ $rc = 1 ]
e2e_check "usbforge verify $back /img2.raw reports VERIFY_MISMATCH at offset 13" \
	grep -Eq "VERIFY_MISMATCH.*offset 13([^0-9]|$)" /tmp/v2.out

# 3. a stick pulled mid-write
timeout 300 $UF write --yes "$dev2" /img2.raw >/tmp/w2.out 2>&1 &
pid=$!
if e2e_wait_io "$dev2" 1200; then
	e2e_ok "the write to $dev2 is under way"
else
	e2e_fail "the write to $dev2 started within 120 s"
fi
t0=$(e2e_uptime_cs)
e2e_unplug stick2
wait $pid
rc=$?
t1=$(e2e_uptime_cs)
cat /tmp/w2.out
echo "FACT remove.exit=$rc remove.centis=$((t1 - t0))"
e2e_check "the write to the pulled stick exits 1, not hung (143), not 0 (got $rc)" [ $rc = 1 ]
e2e_check "the write to the pulled stick reports DEVICE_GONE" grep -q DEVICE_GONE /tmp/w2.out
e2e_check "the writer ended within 60 s of the removal request (took $(($t1 - $t0))0 ms)" \
	[ $((t1 - t0)) -le 6000 ]
e2e_check "$dev2 is gone" e2e_wait_gone "$dev2" 600

# 4. what the watcher saw: wait for both removals of stick 2; then for a "change" event of stick
# 1's disk triggered now: netlink delivers in order, so when the watcher prints it, any
# duplicate report of the removals has been printed too. Then stop it.
t0=$(e2e_uptime_cs)
both_removals() { grep -qx "usb_remove $port2" $W && grep -qx "remove ${dev2##*/}" $W; }
e2e_check "the watcher reported both removals of stick 2" e2e_wait_until 600 both_removals
t1=$(e2e_uptime_cs)
n_change=$(grep -cx "change ${back##*/}" $W)
echo change >"/sys/block/${back##*/}/uevent"
change_seen() { [ "$(grep -cx "change ${back##*/}" $W)" -gt "$n_change" ]; }
e2e_check "the watcher printed the later change event of ${back##*/} (all before it handled)" \
	e2e_wait_until 600 change_seen
kill $wpid
wait $wpid
wrc=$?
sed 's/^/watch| /' $W
sed 's/^/watch-err| /' /tmp/watch.err
n_usb=$(grep -cx "usb_remove $port2" $W)
n_blk=$(grep -cx "remove ${dev2##*/}" $W)
n_usb1=$(grep -cx "usb_remove $port1" $W)
echo "FACT watch.exit=$wrc watch.usb_remove=$n_usb watch.remove=$n_blk watch.wait_centis=$((t1 - t0))"
e2e_check "the watcher printed exactly one 'usb_remove $port2' (got $n_usb)" [ "$n_usb" = 1 ]
e2e_check "the watcher printed exactly one 'remove ${dev2##*/}' (got $n_blk)" [ "$n_blk" = 1 ]
e2e_check "the watcher printed no 'usb_remove $port1' (stick 1's reset is no departure; got $n_usb1)" \
	[ "$n_usb1" = 0 ]
e2e_check "the watcher exits 0 on SIGTERM (got $wrc)" [ "$wrc" = 0 ]
e2e_summary
