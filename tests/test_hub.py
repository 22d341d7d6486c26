"""A class on one machine: `python -m tfm_edu.teacher.hub` with 8 learners running chapter 01.

The hub runs as `make hub` runs it, on a free loopback port with its state in a temporary
folder (outside the repository, so the chapters run from learners' homes, as in a class). Through
its pages and APIs only (`tfm_edu.teacher.classload`), 8 learners sign up, the teacher authorizes
them, each logs in, gets a token, starts a server and runs every code cell of their copy of
chapter 01 over the kernel's websocket, all at once. Then:

- every learner's run finished with every cell `ok`;
- learner A's token and A's login cookie open A's server but never B's (403, or the login page);
- the widgets' JavaScript (JupyterLab's federated extensions: ipywidgets' manager, plotly) loads
  from A's server under `/user/A/` (200), not from a CDN;
- in headless chromium, A logs in at /hub/login, runs chapter 01 in JupyterLab and sees its
  explorer (a text box and a plotly figure); every request the page made went to the hub's
  loopback address, under /hub/ or /user/A/, and no static asset failed.

Stopping the hub must stop everything it started (proxy, servers, kernels). The report (time
per learner p50/p95, CPU and memory per learner) is printed (`pytest -s`) and written as JSON to
$TFM_CLASS_REPORT when set. `make class-test` runs it; alone:
`.venv/bin/python -m pytest -m classroom tests/test_hub.py -s`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, free_port, require_chromium, run_cells

pytest.importorskip("jupyterhub", reason="the teacher extra: pip install -e '.[teacher]'")
psutil = pytest.importorskip("psutil")

from tfm_edu.teacher import classload, hub  # noqa: E402 (after the skips)

ROOT = Path(__file__).resolve().parent.parent
LEARNERS = 8
CHAPTER = "01"
WIDGET_EXTENSIONS = {"@jupyter-widgets/jupyterlab-manager", "jupyterlab-plotly"}
STATIC = re.compile(r"/(static|extensions)/|\.(js|css|woff2?|ttf|svg|png|ico)(\?|$)")
REPORT: dict = {}  # filled by the tests, printed and written at the end


@dataclass(frozen=True)
class _Hub:
    url: str  # http://127.0.0.1:PORT
    state: Path  # its state folder


@dataclass(frozen=True)
class _Class:
    teacher: classload.HubClient
    learners: list[classload.Learner]


def _processes_under(folder: Path) -> list:
    """Processes whose working folder is inside `folder` (the hub, proxy, servers, kernels)."""
    found = []
    for process in psutil.process_iter():
        try:
            if Path(process.cwd()).is_relative_to(folder):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(scope="module")
def class_hub(tmp_path_factory):
    """The class hub, started as `make hub` does; stopped with SIGTERM like Ctrl-C, after which
    no process it started may remain."""
    state = tmp_path_factory.mktemp("class") / "hub"
    state.mkdir()
    assert not state.is_relative_to(ROOT), "the learners' homes must not be in the repository"
    # A teacher's own setting, appended below the generated ones (kept across restarts): the
    # browser check runs the notebook through JupyterLab's command registry.
    config = hub.write_config(state)
    with config.open("a", encoding="utf-8") as f:
        f.write('c.Spawner.args.append("--LabApp.expose_app_in_browser=True")\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = state.parent / "hub.log"
    log = log_path.open("w")
    command = [sys.executable, "-m", "tfm_edu.teacher.hub", "--state", str(state), "--port"]
    process = subprocess.Popen(
        [*command, str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    started = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/hub/api/", timeout=2) as reply:
                    assert "version" in json.load(reply)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the hub did not start:\n{log_path.read_text()[-4000:]}")
                time.sleep(0.3)
        yield _Hub(url, state)
        root = psutil.Process(process.pid)
        started = [root, *root.children(recursive=True)]
    finally:
        process.send_signal(signal.SIGTERM)  # what Ctrl-C does: JupyterHub stops what it started
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            pass
        left = {p.pid: p for p in [*started, *_processes_under(state)] if p.is_running()}
        described = []
        for leftover in left.values():
            try:
                described.append(f"{leftover.pid}: {' '.join(leftover.cmdline())[:120]}")
                leftover.kill()
            except psutil.Error:
                pass
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        log.close()
    assert not left, "processes left running after the hub stopped:\n" + "\n".join(described)
    assert len(started) >= 2 + LEARNERS, "expected the hub, the proxy and the servers"


@pytest.fixture(scope="module")
def class_run(class_hub):
    """8 learners signed up, authorized, logged in, servers started, chapter 01 run at once."""
    password = (class_hub.state / hub.PASSWORD_NAME).read_text().strip()
    names = [f"learner{i:02d}" for i in range(1, LEARNERS + 1)]
    baseline = classload.available_mb()  # before any learner's server
    start = time.monotonic()
    teacher, learners = classload.create_learners(class_hub.url, "teacher", password, names)
    accounts_s = time.monotonic() - start
    servers_s = classload.start_servers(teacher, learners)
    runs, memory_drop = classload.run_chapter(learners, CHAPTER, baseline_mb=baseline)
    report = classload.summarize(runs, memory_drop)
    report.update(accounts_s=round(accounts_s, 1), servers_s=round(servers_s, 1))
    REPORT["load"] = report
    print(f"\n{LEARNERS} accounts in {accounts_s:.1f} s, servers ready in {servers_s:.1f} s")
    print(classload.format_report(report))
    yield _Class(teacher, learners)
    if os.environ.get("TFM_CLASS_REPORT"):
        Path(os.environ["TFM_CLASS_REPORT"]).write_text(json.dumps(REPORT, indent=1))


# -- without a hub: the command's messages and the report's arithmetic --------------------------


def test_percentiles_are_nearest_rank():
    times = [3.0, 1.0, 2.0, 8.0, 5.0, 4.0, 7.0, 6.0]
    assert classload.percentile(times, 50) == 4.0  # the 4th of 8
    assert classload.percentile(times, 95) == 8.0  # ceil(7.6) = the 8th
    assert classload.percentile([2.5], 95) == 2.5
    with pytest.raises(ValueError):
        classload.percentile([], 50)


def test_a_port_in_use_is_refused_with_a_message(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert hub.main(["--state", str(tmp_path / "hub"), "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()  # nothing written


def test_a_missing_teacher_extra_says_make_hub_installs_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hub, "_importable", lambda name: name != "nativeauthenticator")
    assert hub.main(["--state", str(tmp_path / "hub")]) == 2
    err = capsys.readouterr().err
    assert "nativeauthenticator not installed" in err and "make hub" in err


def test_the_config_file_is_written_once_and_kept(tmp_path):
    path = hub.write_config(tmp_path)
    assert "configure(" in path.read_text()
    path.write_text(path.read_text() + "c.Spawner.start_timeout = 300\n")
    assert hub.write_config(tmp_path).read_text().endswith("c.Spawner.start_timeout = 300\n")


# -- the class ----------------------------------------------------------------------------------


@pytest.mark.classroom
def test_every_learner_runs_chapter_01_in_their_own_home(class_hub, class_run):
    runs = REPORT["load"]["runs"]
    failed = [
        f"{r['name']}: cell {r['cells_ok'] + 1}/{r['cells']}, {r['error']}"
        for r in runs
        if not r["completed"]
    ]
    assert not failed, "runs that did not finish:\n" + "\n".join(failed)
    assert len(runs) == LEARNERS
    assert all(r["peak_rss_mb"] > 50 and r["cpu_s"] > 0 for r in runs), "processes not measured"
    for learner in class_run.learners:  # a student copy: every chapter, solutions removed
        home = class_hub.state / "homes" / learner.name
        copies = sorted(p.name for p in home.glob("*.ipynb"))
        assert copies == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
        tags = [c.metadata.get("tags", []) for c in nbformat.read(home / copies[1], 4).cells]
        assert ["solution-removed"] in tags and not any("solution" in t for t in tags)


@pytest.mark.classroom
def test_a_learners_token_and_cookie_open_only_their_own_server(class_hub, class_run):
    a, b = class_run.learners[:2]
    own = a.client.request("GET", f"/user/{a.name}/api/contents")
    assert own.status == 200, "A's token must open A's own server (else the check proves nothing)"
    kernels_before = b.client.request("GET", f"/user/{b.name}/api/kernels").json()
    attempts = {
        "token GET contents": a.client.request("GET", f"/user/{b.name}/api/contents"),
        "token GET kernels": a.client.request("GET", f"/user/{b.name}/api/kernels"),
        "token POST kernels": a.client.request(
            "POST", f"/user/{b.name}/api/kernels", body={"name": "tfm-edu"}
        ),
        "cookie GET lab": a.client.request("GET", f"/user/{b.name}/lab", use_token=False),
        "cookie GET contents": a.client.request(
            "GET", f"/user/{b.name}/api/contents", use_token=False
        ),
    }
    for what, reply in attempts.items():
        opened = reply.status == 200 and urlsplit(reply.url).path.startswith(f"/user/{b.name}/")
        assert not opened, f"A's {what} opened B's server: {reply.status} {reply.url}"
        assert reply.status in (401, 403) or "/hub/login" in reply.url, (what, reply.status)
    assert b.client.request("GET", f"/user/{b.name}/api/kernels").json() == kernels_before
    assert a.client.request("GET", f"/user/{a.name}/lab", use_token=False).status == 200
    REPORT["isolation"] = {what: reply.status for what, reply in attempts.items()}


@pytest.mark.classroom
def test_names_that_are_not_plain_folder_names_cannot_sign_up(class_hub, class_run):
    # A home is homes/NAME: ".." would be the hub's own state folder.
    for name in ("..", ".hidden", "a b"):
        reply = classload.HubClient(class_hub.url).sign_up(name, "long enough 1")
        assert "Something went wrong" in reply.text, name
    assert sorted(p.name for p in (class_hub.state / "homes").iterdir()) == sorted(
        learner.name for learner in class_run.learners
    )


@pytest.mark.classroom
def test_widget_assets_load_under_the_user_prefix(class_run):
    a = class_run.learners[0]
    page = a.client.request("GET", f"/user/{a.name}/lab", use_token=False)
    assert page.status == 200 and urlsplit(page.url).path == f"/user/{a.name}/lab"
    found = re.search(r'<script id="jupyter-config-data"[^>]*>(.*?)</script>', page.text, re.S)
    config = json.loads(found.group(1))
    extensions = {e["name"]: e for e in config["federated_extensions"]}
    assert WIDGET_EXTENSIONS <= set(extensions), sorted(extensions)
    base = config["fullLabextensionsUrl"]
    assert base == f"/user/{a.name}/lab/extensions"
    statuses = {}
    for name, extension in extensions.items():
        reply = a.client.request("GET", f"{base}/{name}/{extension['load']}", use_token=False)
        statuses[name] = reply.status
        assert reply.status == 200 and b"_JUPYTERLAB" in reply.body, (name, reply.status)
    # The teacher's tools stay out of a learner's JupyterLab: no nbgrader menu, no formgrader.
    assert hub.NBGRADER_LAB_EXTENSION in config["disabledExtensions"]
    formgrader = a.client.request("GET", f"/user/{a.name}/formgrader", use_token=False)
    assert formgrader.status == 404, formgrader.status
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page.text)
    assert scripts and all(s.startswith(f"/user/{a.name}/") for s in scripts), scripts
    REPORT["widget_assets"] = statuses


@pytest.mark.classroom
def test_a_learner_runs_chapter_01_in_chromium_through_the_hub(class_hub, class_run, tmp_path):
    require_chromium()
    playwright = pytest.importorskip("playwright.sync_api")
    learner = class_run.learners[0]
    # Every cell in the DOM (no windowing), so that the explorer draws while off screen.
    settings = class_hub.state / "homes" / learner.name / ".jupyter/lab/user-settings"
    tracker = settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    origin = class_hub.url
    requests, sockets, bad = [], [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("websocket", lambda w: sockets.append(w.url))
            page.on("response", lambda r: r.status >= 400 and bad.append((r.status, r.url)))
            page.on("requestfailed", lambda r: bad.append((f"failed: {r.failure}", r.url)))
            chapter = f"/user/{learner.name}/lab/tree/01_attention_numpy.ipynb"
            page.goto(f"{origin}/hub/login?next={chapter}")
            page.fill("#username_input", learner.name)
            page.fill("#password_input", learner.password)
            page.click("#login_submit")
            page.wait_for_url(f"{origin}{chapter}**", timeout=60_000)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            page.wait_for_selector(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000
            )
            run_cells(page)
            page.wait_for_function(
                "!Array.from(document.querySelectorAll('.jp-InputPrompt'))"
                ".some(e => e.textContent.includes('*'))",
                timeout=120_000,
            )
            page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
            page.locator(".widget-text input").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "chapter01.png"))
        finally:
            browser.close()
    allowed = (f"{origin}/hub/", f"{origin}/user/{learner.name}/")
    fetched = [u for u in requests if u.startswith(("http:", "https:"))]
    elsewhere = [u for u in fetched if not u.startswith(allowed)]
    assert not elsewhere, f"requests outside the hub and the learner's prefix: {elsewhere}"
    ws_allowed = tuple(u.replace("http", "ws", 1) for u in allowed)
    assert sockets and all(u.startswith(ws_allowed) for u in sockets), sockets
    assert any("/lab/extensions/@jupyter-widgets/jupyterlab-manager/" in u for u in fetched)
    broken = [(s, u) for s, u in bad if isinstance(s, str) or s >= 500 or STATIC.search(u)]
    assert not broken, f"static assets that failed: {broken}"
    REPORT["browser"] = {"requests": len(fetched), "websockets": len(sockets), "4xx": bad}
    print(f"\nchromium: {len(fetched)} requests, all under {allowed}; 4xx (not static): {bad}")
