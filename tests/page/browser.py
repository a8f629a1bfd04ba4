#!/usr/bin/python3
"""The status page in Debian's chromium (headless, through chromedriver), for tests/page/run-page.

  browser.py URL SLOTS_URL DOM_OUT PNG_OUT RO_PATH DAEMON_PID

Loads URL (the page), waits (deadline) until its script has drawn the three tiles the run set
up (slot 1 bad, one slot writing with its rate known, one done), then asserts their text
exactly, writes the DOM to DOM_OUT, checks that the writing tile follows GET SLOTS_URL within a
second, saves a 1280x800 screenshot to PNG_OUT, locks the daemon's database account
($PAGE_DB_USER, through $UF_DB_SOCKET as root) until the page says "database away" and unlocks
it until it says "live", and finally sends SIGTERM to DAEMON_PID and waits for the page to say
it is offline. Prints each failure; exit 1 if any, 2 on set-up errors.

Why chromedriver and not `chromium --dump-dom`: the page keeps an EventSource open, a network
fetch that never ends, so --virtual-time-budget never runs out (measured: still waiting at 20 s)
and --timeout dumps at the load event, before the stream's first message has been drawn.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("page: python3-selenium is missing (scripts/setup --e2e installs it)")
    sys.exit(2)

url, slots_url, dom_out, png_out, ro_path, pid = sys.argv[1:7]
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("page: FAIL: " + what)
    return cond


def api_tiles():
    with urllib.request.urlopen(slots_url, timeout=5) as r:
        return {t["slot"]: t for t in json.load(r)["data"]}


# Every tile as the page shows it: textContent of each part, None for a hidden part.
TILES_JS = """
return Array.from(document.querySelectorAll('section.tile')).map(function (t) {
  function part(c) { var e = t.querySelector('.' + c); return !e || e.classList.contains('hidden') ? null : e.textContent; }
  return { slot: t.getAttribute('data-slot'), state: t.getAttribute('data-state'), cls: t.className,
           name: part('slot'), text: part('state'), detail: part('detail'), job: part('job'), reason: part('reason') };
});
"""


def tiles(d):
    return {t["slot"]: t for t in d.execute_script(TILES_JS)}


def by_state(ts):
    out = {}
    for t in ts.values():
        out.setdefault(t["state"], []).append(t)
    return out


def wait(d, seconds, cond, what):
    try:
        return WebDriverWait(d, seconds, poll_frequency=0.05).until(lambda d: cond(d))
    except TimeoutException:
        check(False, "within %g s: %s" % (seconds, what))
        return None


opts = webdriver.ChromeOptions()
profile = tempfile.mkdtemp(prefix="uf-page-")
for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--user-data-dir=" + profile, "--window-size=1280,800"):
    opts.add_argument(a)
try:
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
except Exception as e:  # noqa: BLE001 - any start failure is a set-up error
    print("page: chromedriver could not start chromium: %s" % e)
    sys.exit(2)
try:
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    d.get(url)

    def drawn(d):
        b = by_state(tiles(d))
        w = b.get("writing", [])
        return sorted(b) == ["bad", "done", "writing"] and "MB/s" in (w[0]["detail"] or "")

    wait(d, 15, drawn, "the page draws slot states bad, done and writing (with MB/s)")
    with open(dom_out, "w", encoding="utf-8") as f:
        f.write(d.page_source)
    ts, api = tiles(d), api_tiles()
    html = d.find_element("tag name", "html")
    check(html.get_attribute("data-css") == "ok",
          "the style sheet ran (its CSP hash): html data-css=%r" % html.get_attribute("data-css"))
    station = d.find_element("id", "station").text
    link = d.find_element("id", "link").text
    check(station == "usbforge · page-test", "header station: %r" % station)
    check(link == "live", "header link state: %r" % link)
    check(sorted(ts) == ["1", "2", "3"], "one tile per slot: %r" % sorted(ts))
    for s, t in ts.items():
        check(t["name"] == "slot " + s, "slot %s's name: %r" % (s, t["name"]))
        check("s-" + t["state"] in t["cls"].split(), "slot %s's colour class %r for %s" % (s, t["cls"], t["state"]))
    b = by_state(ts)
    if check(sorted(b) == ["bad", "done", "writing"], "tile states: %r" % sorted(b)):
        w, dn, bad = b["writing"][0], b["done"][0], b["bad"][0]
        check(re.fullmatch(r"writing (\d|[1-9]\d) %", w["text"] or ""), "writing tile's state: %r" % w["text"])
        check(re.fullmatch(r"\d+\.\d MB/s · \d\d:\d\d left", w["detail"] or ""), "writing tile's detail: %r" % w["detail"])
        check(w["job"] == "order PAGE-BIG-1 · unit 0", "writing tile's job: %r" % w["job"])
        check(w["reason"] is None, "writing tile shows no reason: %r" % w["reason"])
        check(dn["text"] == "done — take the stick", "done tile's state: %r" % dn["text"])
        check(dn["job"] == "order PAGE-SMALL-1 · unit 0", "done tile's job: %r" % dn["job"])
        check(dn["detail"] is None, "done tile shows no detail: %r" % dn["detail"])
        check(bad["slot"] == "1", "the bad tile is slot 1: %r" % bad["slot"])
        check(bad["text"] == "bad — replace the stick", "bad tile's state: %r" % bad["text"])
        check(bad["job"] == "refused: order PAGE-BIG-1 · unit 0", "bad tile's job: %r" % bad["job"])
        want = api["1"]["reason"] or ""
        check(want.startswith("read-only: cannot open %s for writing: " % ro_path), "the API's reason for slot 1: %r" % want)
        check(bad["reason"] == want, "bad tile's reason %r is the API's %r" % (bad["reason"], want))
        print("page: tiles: " + " | ".join("%s: %s / %s / %s / %s" % (s, t["text"], t["detail"], t["job"], t["reason"])
                                          for s, t in sorted(ts.items())))

        # Live: the writing tile shows what GET /v1/slots said, within a second.
        ws = w["slot"]
        last = -1
        for _ in range(3):
            deadline = time.monotonic() + 5
            p = api_tiles()[ws]
            while p["state"] == "writing" and p["progress"]["percent"] <= last and time.monotonic() < deadline:
                time.sleep(0.05)  # polling the API for its next percent
                p = api_tiles()[ws]
            if not check(p["state"] == "writing" and p["progress"]["percent"] > last,
                         "the API's percent moves past %d within 5 s" % last):
                break
            want_pct = last = p["progress"]["percent"]

            def caught_up(d):
                t = tiles(d)[ws]
                m = re.fullmatch(r"writing (\d+) %", t["text"] or "")
                return t["state"] != "writing" or (m and int(m.group(1)) >= want_pct)

            if not wait(d, 1.0, caught_up, "the writing tile shows the API's %d %%" % want_pct):
                break

    d.save_screenshot(png_out)

    # The database goes away for this daemon (its account locked, its connections killed): the
    # header says so; back when unlocked.
    def account(lock):
        user = os.environ["PAGE_DB_USER"]
        q = "ALTER USER '%s'@'localhost' ACCOUNT %s;" % (user, "LOCK" if lock else "UNLOCK")
        sql = ["mariadb", "--no-defaults", "--socket=" + os.environ["UF_DB_SOCKET"], "-uroot", "-N", "-B", "-e"]
        subprocess.run(sql + [q], check=True)
        if lock:
            ids = subprocess.run(sql + ["SELECT id FROM information_schema.processlist WHERE user = '%s'" % user],
                                 check=True, capture_output=True, text=True).stdout.split()
            for i in ids:
                subprocess.run(sql + ["KILL CONNECTION %d" % int(i)], capture_output=True)

    account(True)
    wait(d, 15, lambda d: d.find_element("id", "link").text == "database away",
         "the page says 'database away' once the daemon's account is locked")
    account(False)
    wait(d, 15, lambda d: d.find_element("id", "link").text == "live",
         "the page says 'live' again once the account is unlocked")

    # The daemon stops: its streams end, the page says it is offline (and keeps retrying).
    os.kill(int(pid), signal.SIGTERM)
    wait(d, 5, lambda d: d.find_element("id", "link").text == "offline — reconnecting",
         "the page says 'offline — reconnecting' after the daemon stopped")
finally:
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)

sys.exit(1 if fails else 0)
