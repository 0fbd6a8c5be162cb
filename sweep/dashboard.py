"""The dashboard as a person sees it: ``mlflow ui`` on 127.0.0.1 and headless Chromium looking at it.

    python -m sweep.dashboard shot --out docs/dashboard.png     # make dashboard-shot: the mini experiment
    python -m sweep.dashboard report --out docs/report.png      # the mini study's report page (make dashboard-shot)
    python -m sweep.dashboard urls                               # each sweep's training-runs page (make mlflow-ui)
    with MlflowUI("sqlite:///mlflow.db") as ui, Chromium() as browser:
        text = show_runs(browser, runs_url(ui.url, ui.experiment_id("mini")), ["sweep-mini", "features"])
        browser.screenshot(Path("shot.png"))

``Chromium`` drives Debian's ``chromium`` (``make chromium-install``) through the
DevTools protocol over a pipe (``--remote-debugging-pipe``: nothing listens on a
port), with a fresh profile in a temporary folder, and waits until the rendered page
shows what it is asked for: the MLflow UI is a JavaScript app, so the HTML the
server sends says nothing. ``MlflowUI`` starts ``mlflow ui`` bound to 127.0.0.1 on a
free port in a process group of its own and stops that group, and only it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def chromium_path() -> str | None:
    """Debian's ``chromium`` (``$SWEEP_CHROMIUM`` overrides), or None when not installed."""
    return os.environ.get("SWEEP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowUI:
    """``mlflow ui`` over a tracking store, on 127.0.0.1; a context manager that stops what it started."""

    def __init__(self, store_uri: str, port: int | None = None, log: Path | None = None, start_timeout_s: float = 120.0) -> None:
        self.store_uri, self.port = store_uri, port or free_port()
        self.log = log or Path(tempfile.mkdtemp(prefix="mlflow-ui-")) / "mlflow-ui.log"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def experiment_id(self, name: str) -> str:
        """The id of the experiment ``name``, asked through the server's REST API."""
        query = urllib.parse.urlencode({"experiment_name": name})
        with urllib.request.urlopen(f"{self.url}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=10) as resp:
            return str(json.load(resp)["experiment"]["experiment_id"])

    def __enter__(self) -> MlflowUI:
        mlflow = Path(sys.executable).with_name("mlflow")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # GenAI job runners: unused, slow to start
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", self.store_uri, "--host", "127.0.0.1",
                                          "--port", str(self.port), "--workers", "1"],
                                         env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"mlflow ui did not start on {self.url}; its log {self.log}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        _stop_group(self.proc)
        self.proc = None


def _stop_group(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """TERM the process group a child leads (it was started in a new session), KILL it after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # workers the leader forked may outlive it for a moment
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe; one page."""

    def __init__(self, width: int = 1440, height: int = 900, binary: str | None = None) -> None:
        self.binary = binary or chromium_path()
        if not self.binary:
            raise RuntimeError("chromium is not installed: run `make chromium-install` (Debian's chromium package)")
        self.size = (width, height)
        self.proc: subprocess.Popen[bytes] | None = None
        self.next_id, self.session = 0, ""
        self.buffer = b""

    def __enter__(self) -> Chromium:
        self.profile = tempfile.mkdtemp(prefix="sweep-chromium-")
        to_child, self.cmd_w = os.pipe()  # Chromium reads commands on its fd 3 ...
        self.out_r, from_child = os.pipe()  # ... and answers on its fd 4
        to_child, from_child = _high_fd(to_child), _high_fd(from_child)  # so that `3<&x` cannot clobber them
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
                 f"--window-size={self.size[0]},{self.size[1]}", "about:blank"]
        shell = f'exec "$0" "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-'
        self.proc = subprocess.Popen(["/bin/bash", "-c", shell, self.binary, *flags], pass_fds=(to_child, from_child),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(to_child)
        os.close(from_child)
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.size[0], height=self.size[1],
                  deviceScaleFactor=1, mobile=False)
        return self

    def call(self, method: str, session: bool = False, timeout_s: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\0" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.out_r], [], [], left)[0]:
                    raise TimeoutError(f"chromium did not answer {method} within {timeout_s:.0f}s")
                chunk = os.read(self.out_r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed its DevTools pipe during {method}")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, until: Sequence[str] = (), timeout_s: float = 90.0) -> str:
        """Load ``url`` and wait until the rendered text contains every string of ``until``; returns that text."""
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if all(s in text for s in until) and self.evaluate("document.readyState") == "complete":
                return text
            time.sleep(0.5)
        missing = [s for s in until if s not in text]
        raise TimeoutError(f"{url} did not show {missing} within {timeout_s:.0f}s; it shows:\n{text[:3000]}")

    def click(self, selector: str) -> bool:
        """Click the first element matching the CSS ``selector``; False when there is none."""
        return bool(self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                                  "if (e) e.click(); return !!e; })()"))

    def click_all(self, selector: str) -> int:
        """Click every element matching ``selector``; how many there were."""
        return int(self.evaluate(f"(() => {{ const all = [...document.querySelectorAll({json.dumps(selector)})]; "
                                 "all.forEach(e => e.click()); return all.length; })()") or 0)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            try:
                self.call("Browser.close", timeout_s=5)
            except (OSError, RuntimeError, TimeoutError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _stop_group(self.proc)
            self.proc = None
        for fd in (self.cmd_w, self.out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def _high_fd(fd: int, low: int = 10) -> int:
    """``fd`` moved to a descriptor number >= ``low``."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return high


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's training-runs page. MLflow 3.17 picks the page's mode (GenAI or model training)
    from this query parameter or the browser's last choice, not from the experiment's kind tag."""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def show_runs(browser: Chromium, url: str, expect: Sequence[str], timeout_s: float = 90.0) -> str:
    """Open the training-runs page, close the assistant panel, unfold the parent runs; the runs table's text
    (from its header on) once every string of ``expect`` is in it (job runs sit under their parent, folded)."""
    browser.open(url, until=["Run Name"], timeout_s=timeout_s)
    browser.click('[data-component-id="mlflow.assistant.chat_panel.close"]')
    # The parent runs' unfold buttons (a click toggles: each is clicked once, again only if nothing unfolded).
    unfold = '[data-component-id$="runnamecellrenderer.tsx_46"]'
    deadline = time.monotonic() + timeout_s
    next_click, table = 0.0, ""
    while time.monotonic() < deadline:
        text = browser.evaluate("document.body.innerText") or ""
        table = text.split("Run Name", 1)[-1]
        if all(s in table for s in expect):
            return table
        if time.monotonic() >= next_click and browser.click_all(unfold):
            next_click = time.monotonic() + 15.0
        time.sleep(0.5)
    missing = [s for s in expect if s not in table]
    raise TimeoutError(f"{url} did not show {missing} in its runs table; it shows:\n{table[:3000]}")


def shoot(store_uri: str, experiment: str, out: Path) -> str:
    """Screenshot the experiment's training runs in the MLflow UI over ``store_uri``; returns the page's text."""
    with MlflowUI(store_uri) as ui, Chromium() as browser:
        text = show_runs(browser, runs_url(ui.url, ui.experiment_id(experiment)), [f"sweep-{experiment}", "features"])
        time.sleep(1.0)  # let the last icons paint
        browser.screenshot(out)
    return text


def shoot_report(page: Path, out: Path) -> str:
    """Screenshot the top of a study report page (headline, plan, budget) as a browser shows it; returns its text."""
    with Chromium(width=1200, height=1400) as browser:
        text = browser.open(page.resolve().as_uri(), until=["Study report", "Commands"])
        time.sleep(0.5)  # let the embedded figures paint
        browser.screenshot(out)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweep.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("shot", "report", "urls"),
                        help="shot: a screenshot of the runs; report: of a study report page; urls: print each sweep's page")
    parser.add_argument("--store", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
                        help="tracking store (default: sqlite:///mlflow.db)")
    parser.add_argument("--experiment", default="mini", help="shot: the sweep (experiment) to show (default: mini)")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"), help="shot: the PNG to write")
    parser.add_argument("--port", type=int, default=5000, help="urls: the port `mlflow ui` listens on")
    parser.add_argument("--page", type=Path, default=Path("outputs/sweeps/mini/report.html"),
                        help="report: the study report to show (default: the mini study's)")
    args = parser.parse_args(argv)
    if args.what == "report":
        if not args.page.exists():
            print(f"no study report at {args.page}: `make run` (or `python -m sweep fit`) writes it", file=sys.stderr)
            return 2
        shoot_report(args.page, args.out)
        print(f"wrote {args.out}")
        return 0
    from sweep.tracking import Tracker, absolute_uri

    uri = absolute_uri(args.store)
    if args.what == "urls":
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
            print("no MLflow store yet: `make run` fills it")
            return 0
        for exp in Tracker(uri).client.search_experiments():
            if exp.name != "Default":
                print(f"sweep {exp.name}: {runs_url(f'http://127.0.0.1:{args.port}', exp.experiment_id)}")
        return 0
    shoot(uri, args.experiment, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
