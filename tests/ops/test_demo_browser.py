"""The demo looks like the product: the README's first command (`manage.py demo`, not the test server), opened in
Debian's Chromium. Static files are served with DEBUG off, the stylesheet applies and the dashboard's chart draws.

The demo runs on the embedded default (SQLite in its own DOSEREG_VAR_DIR, tasks in-process) on free ports, is
logged into with a login it printed, and is stopped with SIGINT like Ctrl+C. A screenshot of the dashboard goes
to test-artifacts/screenshots/demo-dashboard.png.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO, require
from tests.e2e.conftest import free_port
from tests.browser_wait import wait_js

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = REPO / "test-artifacts" / "screenshots"
UNSET = ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "EMAIL_HOST", "EMAIL_BACKEND", "EMAIL_FILE_PATH",
         "DEMO_DICOM_BIND_ADDRESS", "DEBUG", "DJANGO_SETTINGS_MODULE")


class Demo:
    """`manage.py demo` as a subprocess; its output is read line by line on a thread."""

    def __init__(self, var_dir, web_port: int, dicom_port: int):
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update(DOSEREG_VAR_DIR=str(var_dir), DICOM_PORT=str(dicom_port), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "manage.py", "demo", "--web", f"127.0.0.1:{web_port}",
                                      "--patients", "8"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if m := re.search(pattern, line):
                return m
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"the demo never printed /{pattern}/:\n" + "\n".join(self.lines[-60:]))

    def output(self) -> str:
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                return "\n".join(self.lines)
            if line is not None:
                self.lines.append(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the demo did not stop within 60 s of SIGINT") from None
        return self.proc.returncode


@pytest.fixture
def chromium():
    require(os.path.exists(CHROMIUM), f"Debian chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        require(False, "the playwright python package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def demo(tmp_path):
    d = Demo(tmp_path / "var", web_port=free_port(), dicom_port=free_port())
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_the_demo_dashboard_is_styled_and_draws_its_chart(demo, chromium, tmp_path):
    base = demo.wait_for(r"^web: (http://127\.0\.0\.1:\d+)/", timeout=300).group(1)
    out = demo.output()
    user, password = re.search(r"log in as rso\s+user '([^']+)' password '([^']+)'", out).groups()
    assert re.search(r"^demo: sent (\d+)/\1 objects", out, re.M), out
    assert re.search(r"^demo: \d+ alert e-mails written to ", out, re.M), out

    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    static: dict[str, int] = {}
    page.on("response", lambda r: static.__setitem__(r.url.split("/static/", 1)[1], r.status) if "/static/" in r.url else None)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(base + "/login/")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        response = page.goto(base + "/dashboard/")
        assert response.status == 200
        page.wait_for_load_state("load")

        # the stylesheet, the chart library and the page script answered (DEBUG is off: whitenoise serves them)
        assert static.get("web/app.css") == 200, static
        assert static.get("vendor/chartjs/chart.umd.min.js") == 200, static
        assert static.get("web/app.js") == 200, static
        # ... and the stylesheet applied: app.css's colours, not the browser's defaults (white, 8px margin)
        styles = page.evaluate("""() => {
            const cs = (el) => getComputedStyle(el);
            return {bodyBg: cs(document.body).backgroundColor, bodyMargin: cs(document.body).margin,
                    topbarBg: cs(document.querySelector('.topbar')).backgroundColor,
                    topbarDisplay: cs(document.querySelector('.topbar')).display,
                    rules: [...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0)};
        }""")
        assert styles["bodyBg"] == "rgb(244, 246, 249)", styles   # --bg: #f4f6f9
        assert styles["bodyMargin"] == "0px", styles
        assert styles["topbarBg"] == "rgb(16, 42, 67)", styles    # .topbar: #102a43
        assert styles["topbarDisplay"] == "flex", styles
        assert styles["rules"] > 100, styles

        # the trends chart drew: a Chart.js chart on the canvas, with the demo's devices and procedures, and pixels
        wait_js(page, "() => window.Chart && Chart.getChart(document.getElementById('trend-chart'))",
                               timeout=15000)
        chart = page.evaluate("""() => {
            const canvas = document.getElementById('trend-chart');
            const chart = Chart.getChart(canvas);
            const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < px.length; i += 4) { if (px[i] > 0) painted++; }
            return {width: canvas.width, height: canvas.height, painted,
                    datasets: chart.data.datasets.length,
                    procedures: chart.data.datasets.reduce((n, d) => n + d.data.reduce((a, v) => a + (v || 0), 0), 0)};
        }""")
        assert chart["width"] > 300 and chart["height"] > 100, chart
        assert chart["datasets"] > 0 and chart["procedures"] > 0, chart
        assert chart["painted"] > 0.01 * chart["width"] * chart["height"], chart
        assert errors == [], errors  # no script errors or CSP violations
        page.wait_for_timeout(250)
        page.screenshot(path=str(SHOTS / "demo-dashboard.png"), full_page=True)
    finally:
        ctx.close()

    # every main page of each clinical role answers on the embedded default (SQLite, which the suite's other page
    # tests, on PostgreSQL, never run: the protocol audit's SQL once worked only on PostgreSQL)
    logins = dict((role, (u, pw)) for role, u, pw in re.findall(r"log in as (\w+)\s+user '([^']+)' password '([^']+)'", out))
    walks = {
        "rso": ["/dashboard/", "/alerts/", "/alerts/due/", "/studies/", "/studies/?sort=site&modality=CT",
                "/studies/?sort=-standard", "/studies/?sort=-sex&page=2", "/studies/modality/CT/", "/patients/",
                "/patients/?sort=-kap", "/devices/", "/staff/", "/alerts/incidents/", "/api/v1/studies/",
                "/studies/export.csv", "/studies/export.xlsx"],
        "physicist": ["/protocols/", "/protocols/overview/", "/protocols/names/", "/protocols/drls/",
                      "/protocols/technique/", "/protocols/technique/?modality=MG", "/protocols/?modality=CT",
                      "/studies/?sort=-dlp"],
    }
    for role, urls in walks.items():
        assert role in logins, out
        ctx = chromium.new_context()
        try:
            page = ctx.new_page()
            page.goto(base + "/login/")
            page.fill("input[name=username]", logins[role][0])
            page.fill("input[name=password]", logins[role][1])
            with page.expect_navigation():
                page.click("button[type=submit]")
            studies, patients = ctx.request.get(base + "/studies/").text(), ctx.request.get(base + "/patients/").text()
            study, patient = re.search(r'href="(/studies/\d+/)"', studies), re.search(r'href="(/patients/\d+/)"', patients)
            assert study and patient, (studies[-3000:], patients[-3000:])
            extra = [study.group(1), patient.group(1)]
            if role == "physicist":  # a group of the audit (its histograms and outliers)
                audit = ctx.request.get(base + "/protocols/").text()
                group = re.search(r'href="(/protocols/group/\?[^"]+)"', audit)
                assert group, audit[-3000:]
                extra.append(group.group(1).replace("&amp;", "&"))
            for url in urls + extra:
                r = ctx.request.get(base + url)
                assert r.status == 200, (role, url, r.status, r.text()[:500])
        finally:
            ctx.close()

    assert demo.stop() == 0, demo.output()[-3000:]
    out = demo.output()
    assert "demo: stopped" in out, out[-3000:]
    # nothing raw on the terminal: no MIME e-mails, no kombu broker warning, no tracebacks
    for raw in ("Content-Type:", "No hostname was supplied", "Traceback"):
        assert raw not in out, out[-3000:]
