"""The report in a real browser: headless Chromium opens it from disk (no network, no server), runs its
scripts without a console error or a network request, renders every plot, and takes a screenshot that is not
blank. Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``): no
selenium or playwright. Skipped where no Chromium is installed (``apt-get install chromium``).

    pytest -m browser tests/experiment/test_report_browser.py --basetemp=/tmp/report-browser  # keeps the PNGs
"""
from __future__ import annotations

import base64
import fcntl
import importlib.util
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("plotly")

from skiprnn.experiment.report import build_report  # noqa: E402

pytestmark = pytest.mark.browser

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-pipe"]
LOCAL = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _fixtures():
    """make_runs() of test_report.py, loaded by path (works whatever pytest's import mode)."""
    spec = importlib.util.spec_from_file_location("_report_fixtures", Path(__file__).with_name("test_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Chromium:
    """A headless Chromium and one page, driven through the DevTools protocol on fds 3 (in) and 4 (out)."""

    def __init__(self, binary: str, profile: Path, timeout: float = 90.0):
        self.timeout, self.next_id, self.events, self.buffer = timeout, 0, [], b""
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # out of the way of 3 and 4 before the child dup2()s them there
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (to_chrome_r, from_chrome_w)]
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)

        def child_fds():
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.log = open(profile.parent / f"{profile.name}-chromium.log", "wb")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     preexec_fn=child_fds, close_fds=False)
        for fd in high:
            os.close(fd)
        self.write_fd, self.read_fd = to_chrome_w, from_chrome_r
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError("no answer from Chromium" + (" (it exited)" if self.proc.poll() is not None else ""))
            ready, _, _ = select.select([self.read_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise TimeoutError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.25)

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, failed loads, and any request that left the machine."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                          for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.requestWillBeSent":
                url = params.get("request", {}).get("url", "")
                if not url.startswith(LOCAL):
                    found.append(f"network request: {url}")
            elif method == "Network.loadingFailed":
                found.append(f"load failed: {params.get('errorText')}")
        return found

    def screenshot(self, path: Path, width: int = 1400) -> Path:
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=min(height, 12000),
                  deviceScaleFactor=1, mobile=False)
        time.sleep(1.0)  # plotly relayouts on resize (responsive)
        self.wait_for("document.body.dataset.rendered === 'ok'", 10)
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()


CHECK_PLOTS = """(() => {
  const divs = [...document.querySelectorAll('div.plot')];
  return divs.map(d => ({
    id: d.id,
    plotly: d.classList.contains('js-plotly-plot'),
    svgs: d.querySelectorAll('.main-svg').length,
    traces: (d.data || []).length,
    drawn: d.querySelectorAll('.scatterlayer .trace path, .scatterlayer .trace .point').length,
    height: d.getBoundingClientRect().height,
  }));
})()"""


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        pytest.skip(f"no Chromium found (looked for {', '.join(CANDIDATES)} on PATH); "
                    "install one, e.g. `apt-get install chromium`, to run the browser tests")
    return binary


def open_report(binary: str, html: Path, tmp_path: Path, name: str) -> tuple[list[dict], list[str], Path, dict]:
    browser = Chromium(binary, tmp_path / f"profile-{name}")
    try:
        browser.call("Emulation.setDeviceMetricsOverride", session=True, width=1400, height=1000,
                     deviceScaleFactor=1, mobile=False)
        browser.call("Page.navigate", session=True, url=html.resolve().as_uri())
        state = browser.wait_for("document.readyState === 'complete' && document.body && "
                                 "document.body.dataset.rendered", timeout=60)
        plots = browser.evaluate(CHECK_PLOTS)
        page = browser.evaluate("({rendered: document.body.dataset.rendered, plots: document.body.dataset.plots, "
                                "checkboxes: document.querySelectorAll('input[data-group]').length, "
                                "missing: !document.getElementById('plotly-missing').hidden})")
        page["state"] = state
        # hiding a group from the table hides its traces in every plot
        page["hidden_after_toggle"] = browser.evaluate("""(() => {
          const box = document.querySelector('input[data-group]');
          box.click();
          const g = box.dataset.group;
          return [...document.querySelectorAll('div.plot')].map(d =>
            d.data.filter(t => t.legendgroup === g).every(t => t.visible === 'legendonly'));
        })()""")
        browser.evaluate("document.querySelector('input[data-group]').click()")  # shown again
        # a real click on the first legend entry of the curves hides that group in every plot and the table
        box = browser.evaluate("""(() => {
          const item = document.querySelector('#plot-curves .legend .traces .legendtoggle');
          item.scrollIntoView({block: 'center'});
          const r = item.getBoundingClientRect();
          return {x: r.left + r.width / 2, y: r.top + r.height / 2};
        })()""")
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", session=True, type=kind, x=box["x"], y=box["y"],
                         button="left", clickCount=1)
        page["legend_click"] = browser.wait_for("""(() => {
          const g = document.querySelector('input[data-group]').dataset.group;
          const hidden = [...document.querySelectorAll('div.plot')].map(d =>
            d.data.filter(t => t.legendgroup === g).every(t => t.visible === 'legendonly'));
          return hidden.every(Boolean) && !document.querySelector('input[data-group]').checked;
        })()""", timeout=10)
        browser.evaluate("document.getElementById('show-all').click()")
        # the search box keeps the runs whose words hold every term, and their groups in the plots
        page["search"] = browser.evaluate("""(() => {
          const box = document.getElementById('filter');
          box.value = 'skip_gru seed=2';
          box.dispatchEvent(new Event('input'));
          const visible = sel => [...document.querySelectorAll(sel)].filter(tr => !tr.hidden).length;
          const found = {runs: visible('table.runs tbody tr'), groups: visible('table.groups tbody tr'),
                         count: document.getElementById('filter-count').textContent,
                         plotted: [...document.querySelectorAll('div.plot')].map(d =>
                           new Set(d.data.filter(t => t.visible !== 'legendonly').map(t => t.legendgroup)).size)};
          box.value = '';
          box.dispatchEvent(new Event('input'));
          found.cleared = visible('table.runs tbody tr');
          return found;
        })()""")
        page["width"] = browser.evaluate("document.querySelector('table.groups') ? "
                                         "document.querySelector('table.groups').getBoundingClientRect().width : 0")
        shot = browser.screenshot(tmp_path / f"{name}.png")
        return plots, browser.problems(), shot, page
    finally:
        browser.close()


def assert_not_blank(png: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(str(png))[..., :3]
    assert pixels.shape[0] > 800 and pixels.shape[1] >= 1400
    colours = len(np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0))
    assert pixels.std() > 0.05 and colours > 50, f"blank screenshot? std {pixels.std():.3f}, {colours} colours"


@pytest.mark.parametrize("js", ["inline", "directory"])
def test_report_renders_in_chromium(chromium, tmp_path, js):
    runs = _fixtures().make_runs(tmp_path)
    html = build_report([runs], tmp_path / "site" / f"report-{js}.html", js=js, title=f"Browser check ({js})",
                        paper=_fixtures().PAPER)
    plots, problems, shot, page = open_report(chromium, html, tmp_path, f"report-{js}")
    assert problems == []
    assert page["state"] == "ok" and page["rendered"] == "ok" and not page["missing"]
    assert page["plots"] == "2" and page["checkboxes"] == 2
    assert [p["id"] for p in plots] == ["plot-curves", "plot-tradeoff"]
    for plot in plots:
        assert plot["plotly"] and plot["svgs"] >= 1 and plot["traces"] > 0 and plot["drawn"] > 0, plot
        assert plot["height"] > 300, plot
    assert page["hidden_after_toggle"] == [True, True]
    assert page["legend_click"] is True
    search = page["search"]
    assert (search["runs"], search["groups"], search["count"]) == (1, 1, "1 of 7 runs"), search
    assert search["plotted"] == [1, 1] and search["cleared"] == 7, search
    assert page["width"] <= 1400, page["width"]
    assert_not_blank(shot)


def test_directory_report_without_plotly_js_says_so(chromium, tmp_path):
    """Moved away from its plotly.min.js, a directory-mode page shows a notice (and its tables), not a blank."""
    runs = _fixtures().make_runs(tmp_path)
    html = build_report([runs], tmp_path / "site" / "report.html", js="directory")
    (tmp_path / "site" / "plotly.min.js").unlink()
    browser = Chromium(chromium, tmp_path / "profile-missing")
    try:
        browser.call("Page.navigate", session=True, url=html.resolve().as_uri())
        assert browser.wait_for("document.readyState === 'complete' && document.body.dataset.rendered", 60) == "error"
        assert browser.evaluate("!document.getElementById('plotly-missing').hidden") is True
        assert browser.evaluate("document.querySelectorAll('table.groups tbody tr').length") == 2
    finally:
        browser.close()


REAL_RESULTS = Path(__file__).resolve().parents[2] / "results" / "table4"


@pytest.mark.skipif(not REAL_RESULTS.is_dir(), reason="results/table4 is not in this checkout")
def test_real_table4_report_renders(chromium, tmp_path):
    html = build_report([REAL_RESULTS], tmp_path / "table4.html", js="directory", title="results/table4")
    plots, problems, shot, page = open_report(chromium, html, tmp_path, "table4")
    assert problems == []
    assert page["rendered"] == "ok" and all(p["plotly"] and p["traces"] > 0 and p["drawn"] > 0 for p in plots)
    assert_not_blank(shot)
