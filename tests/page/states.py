#!/usr/bin/python3
"""Every state of a tile in chromium, for tests/page/run-page: tests/page/page_states serves a
board with one slot per state (no database); the page must draw each in words, and show the
order number and reasons that look like HTML as text.

  states.py URL PNG_OUT
"""
import sys
import tempfile
import shutil

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

url, png_out = sys.argv[1:3]
WANT = {  # slot: (data-state, state text, detail, job, reason); None: the part is hidden
    "1": ("empty", "empty — insert a stick", None, None, None),
    "2": ("ready", "ready — waiting for a job", None, None, None),
    "3": ("checking", "checking — the stick is tested", None, "order A-1001 · unit 0", None),
    "4": ("writing", "writing 10 %", "starting…", "order A-1001 · unit 1", None),
    "5": ("verifying", "verifying 70 %", "starting…", "order <b>X</b>&amp; · unit 2", None),
    "6": ("done", "done — take the stick", None, "order B-2 · unit 0", None),
    "7": ("bad", "bad — replace the stick", None, None, "fake capacity: only 2 GB of 16 GB usable"),
    "8": ("unsafe", "unsafe — do not use", None, None, "mounted at <img src=x onerror=alert(1)>"),
}
TILES_JS = """
return Array.from(document.querySelectorAll('section.tile')).map(function (t) {
  function part(c) { var e = t.querySelector('.' + c); return !e || e.classList.contains('hidden') ? null : e.textContent; }
  return [t.getAttribute('data-slot'), t.getAttribute('data-state'), part('state'), part('detail'), part('job'),
          part('reason'), t.querySelectorAll('b, img, script').length];
});
"""
opts = webdriver.ChromeOptions()
profile = tempfile.mkdtemp(prefix="uf-page-")
for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--user-data-dir=" + profile):
    opts.add_argument(a)
fails = []
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
    d.get(url)
    try:
        WebDriverWait(d, 15, poll_frequency=0.05).until(
            lambda d: len(d.execute_script(TILES_JS)) == 8)
    except TimeoutException:
        fails.append("within 15 s: eight tiles drawn")
    got = {t[0]: t for t in d.execute_script(TILES_JS)}
    for slot, want in WANT.items():
        t = got.get(slot)
        if not t or tuple(t[1:6]) != want or t[6] != 0:
            fails.append("slot %s: %r, want %r and no element made of its text" % (slot, t and t[1:], want))
    link = d.find_element("id", "link").text
    if link != "live":
        fails.append("header link state: %r" % link)
    d.save_screenshot(png_out)
finally:
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)
for f in fails:
    print("page: FAIL: states: " + f)
sys.exit(1 if fails else 0)
