"""What a class costs: N learners run one chapter at the same moment, through a running hub.

    python -m tfm_edu.teacher.classload --state hub --learners 8 --chapter 01

does, against the hub that `python -m tfm_edu.teacher.hub --state hub` runs (on this machine,
so that it can read the learners' processes), what a class does at the start of a lesson, over
HTTP only, with the pages and APIs a browser uses:

1. each learner signs up at /hub/signup; the teacher (password from `hub/teacher-password`)
   logs in and authorizes them at /hub/authorize/NAME;
2. each learner logs in at /hub/login and asks the hub for an API token (/hub/api/users/NAME/
   tokens, with the login cookie and its XSRF token);
3. with that token: starts their server (/hub/api/users/NAME/server), opens chapter NN (their
   own copy, /user/NAME/api/contents/...), creates a kernel (/user/NAME/api/sessions), and
   runs every code cell in order over the kernel's websocket (/user/NAME/api/kernels/ID/
   channels, the Jupyter messaging protocol), all learners at once, stopping at the first
   error as "Run All" does (a cell tagged `raises-exception`, which shows an error on purpose,
   may fail and the run goes on, as in JupyterLab).

For each learner it records the wall time from the first cell sent to the last reply, the
kernel's start-up time, whether every cell replied `ok`, the CPU seconds the learner's server
and kernel used, and their memory: the peak of the summed resident set (RSS) of that server's
process tree, sampled twice a second, and its unique set (USS) at the end -- what one more
learner adds, since pages shared with other processes (libraries) are counted in RSS only. The
machine's drop in available memory while the class runs, divided by N, is a third view.
Percentiles are nearest-rank: p95 of 8 runs is the 8th slowest, ceil(0.95 * 8) = 8.

Afterwards the learners' servers are stopped and their accounts and homes removed (`--keep`
leaves them). Names are `load<random>-NN`, so a class's own accounts are never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import secrets
import shutil
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path

__all__ = [
    "Learner",
    "LearnerRun",
    "HubClient",
    "available_mb",
    "percentile",
    "create_learners",
    "start_servers",
    "run_chapter",
    "remove_learners",
    "summarize",
    "format_report",
    "main",
]

SAMPLE_SECONDS = 0.5  # how often each learner's process tree is measured


@dataclass(frozen=True)
class Reply:
    """What came back from one HTTP request (redirects followed)."""

    status: int  # the final response's status
    url: str  # the final URL, after redirects
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class HubClient:
    """One person's HTTP session with a hub: cookies kept, redirects followed (urllib)."""

    def __init__(self, hub: str, token: str | None = None) -> None:
        self.hub = hub.rstrip("/")
        self.token = token
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict | None = None,
        body: dict | None = None,
        token: str | None = None,
        use_token: bool = True,
        headers: dict | None = None,
        timeout: float = 60,
    ) -> Reply:
        """`method path` (path from the hub's root) with a form or a JSON body, authenticated by
        `token` (default: this client's own, unless `use_token=False`) and the cookies; a 4xx or
        5xx is returned, not raised."""
        data, headers = None, dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        token = token or (self.token if use_token else None)
        if token:
            headers["Authorization"] = f"token {token}"
        request = urllib.request.Request(self.hub + path, data, headers, method=method)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return Reply(response.status, response.url, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.url, error.read())

    def cookie(self, name: str, path: str = "/hub/") -> str | None:
        """The value of cookie `name` set for `path`."""
        for cookie in self.cookies:
            if cookie.name == name and path.startswith(cookie.path):
                return cookie.value
        return None

    def form_page(self, path: str) -> str:
        """GET a page with a form, return its `_xsrf` field (JupyterHub checks it on POST)."""
        reply = self.request("GET", path)
        found = re.search(r'name="_xsrf"\s+value="([^"]+)"', reply.text)
        if reply.status != 200 or not found:
            raise RuntimeError(f"GET {path}: {reply.status}, no form found")
        return found.group(1)

    def sign_up(self, name: str, password: str) -> Reply:
        """Fill in /hub/signup (NativeAuthenticator's page); the reply's text says how it went."""
        form = {
            "username": name,
            "signup_password": password,
            "signup_password_confirmation": password,
            "_xsrf": self.form_page("/hub/signup"),
        }
        return self.request("POST", "/hub/signup", form=form)

    def login(self, name: str, password: str) -> None:
        """Log in at /hub/login (the page a learner uses) without starting a server."""
        xsrf = self.form_page("/hub/login")
        form = {"username": name, "password": password, "_xsrf": xsrf}
        reply = self.request("POST", "/hub/login?next=%2Fhub%2Fhome", form=form)
        if reply.status != 200 or not reply.url.endswith("/hub/home"):
            raise RuntimeError(f"login as {name} failed: {reply.status} at {reply.url}")

    def new_token(self, name: str, note: str = "classload") -> str:
        """An API token for `name`, asked for with the login cookie (as /hub/token does)."""
        xsrf = self.cookie("_xsrf", "/hub/")
        reply = self.request(
            "POST",
            f"/hub/api/users/{name}/tokens",
            body={"note": note, "expires_in": 24 * 3600},
            headers={"X-XSRFToken": xsrf or ""},
        )
        if reply.status != 201:
            raise RuntimeError(f"token for {name}: {reply.status} {reply.text[:200]}")
        return reply.json()["token"]


@dataclass
class Learner:
    """One learner's account and their way in."""

    name: str
    password: str
    client: HubClient = field(repr=False)  # logged in (cookies) and holding their token
    token: str = field(default="", repr=False)
    pid: int = 0  # their single-user server's process, once started
    start_cpu_s: float = 0.0  # CPU seconds that server used to start


@dataclass
class LearnerRun:
    """What one learner's run of a chapter measured."""

    name: str
    chapter: str
    cells: int  # code cells in the chapter
    cells_ok: int  # cells that replied "ok" (or an error, if tagged raises-exception) in a row
    completed: bool  # every cell ran and replied as expected
    error: str  # the first error ("" if none)
    kernel_start_s: float  # session created -> kernel answered kernel_info
    run_s: float  # first cell sent -> last reply ("Run All")
    cpu_s: float  # CPU seconds of the learner's server and kernel during the run
    server_start_cpu_s: float  # CPU seconds the learner's server used to start
    peak_rss_mb: float  # peak of the summed RSS of server + kernel
    uss_mb: float  # unique memory of server + kernel at the end of the run


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the ceil(q/100 * n)-th smallest value (q in (0, 100])."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def available_mb() -> float:
    """The machine's available memory (MB): free plus what the kernel can reclaim."""
    import psutil

    return psutil.virtual_memory().available / 2**20


def create_learners(
    hub: str, admin: str, admin_password: str, names: list[str]
) -> tuple[HubClient, list[Learner]]:
    """Sign each name up, authorize it as the teacher, log it in and give it a token.

    Returns:
        The teacher's client (logged in, with an admin token) and the learners.
    """
    teacher = HubClient(hub)
    teacher.login(admin, admin_password)
    learners = [Learner(n, secrets.token_urlsafe(12), HubClient(hub)) for n in names]

    def sign_up(learner: Learner) -> None:
        reply = learner.client.sign_up(learner.name, learner.password)
        if "sent to the admin" not in reply.text:
            raise RuntimeError(f"signup of {learner.name}: {reply.status} (name taken?)")

    def log_in(learner: Learner) -> None:
        learner.client.login(learner.name, learner.password)
        learner.token = learner.client.token = learner.client.new_token(learner.name)

    with ThreadPoolExecutor(len(learners)) as pool:
        list(pool.map(sign_up, learners))
        for learner in learners:  # the teacher's click on "Authorize" (a GET that toggles)
            reply = teacher.request("GET", f"/hub/authorize/{learner.name}")
            if reply.status != 200:
                raise RuntimeError(f"authorizing {learner.name}: {reply.status}")
        list(pool.map(log_in, learners))
    teacher.token = teacher.new_token(admin)  # from now on the teacher calls the API
    return teacher, learners


def start_servers(teacher: HubClient, learners: list[Learner], timeout: float = 180) -> float:
    """Start every learner's server at once (with their own token); wait until all are ready.

    Returns:
        Seconds until the last one was ready. Each learner's `pid` is set from the hub's
        record of its spawner (read with the teacher's admin token), and `start_cpu_s`.
    """
    start = time.monotonic()

    def start_one(learner: Learner) -> None:
        reply = learner.client.request("POST", f"/hub/api/users/{learner.name}/server")
        if reply.status not in (201, 202, 400):  # 400: already running
            raise RuntimeError(f"starting {learner.name}'s server: {reply.status} {reply.text}")
        while time.monotonic() - start < timeout:
            user = learner.client.request("GET", f"/hub/api/users/{learner.name}").json()
            server = user.get("servers", {}).get("")
            if server and server.get("ready"):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{learner.name}'s server not ready after {timeout:.0f} s")
        state = teacher.request("GET", f"/hub/api/users/{learner.name}").json()
        learner.pid = int(state["servers"][""].get("state", {}).get("pid", 0))
        learner.start_cpu_s = _tree_cpu(learner.pid)

    with ThreadPoolExecutor(len(learners)) as pool:
        list(pool.map(start_one, learners))
    return time.monotonic() - start


def run_chapter(
    learners: list[Learner], chapter: str, timeout: float = 600, baseline_mb: float | None = None
) -> tuple[list[LearnerRun], float]:
    """Every learner runs all code cells of their copy of chapter `chapter` ("01"), at once.

    Args:
        baseline_mb: the machine's available memory before the learners' servers started
            (default: when the runs begin, which leaves the servers out).

    Returns:
        One run per learner, and how far (MB) the machine's available memory fell below
        `baseline_mb` during the runs.
    """
    before = available_mb() if baseline_mb is None else baseline_mb
    runs, lowest = asyncio.run(_run_all(learners, chapter, timeout))
    return runs, before - lowest


def remove_learners(teacher: HubClient, learners: list[Learner], state: Path | None) -> None:
    """Stop the learners' servers, delete their accounts and (given `state`) their homes."""
    for learner in learners:
        teacher.request("DELETE", f"/hub/api/users/{learner.name}/server")
    for learner in learners:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the hub refuses to delete a user still stopping
            if teacher.request("DELETE", f"/hub/api/users/{learner.name}").status in (204, 404):
                break
            time.sleep(0.5)
        if state is not None:
            shutil.rmtree(Path(state) / "homes" / learner.name, ignore_errors=True)


def summarize(runs: list[LearnerRun], memory_drop_mb: float | None = None) -> dict:
    """The report: p50/p95 of run time, memory and CPU per learner (nearest-rank)."""
    times = [r.run_s for r in runs]
    starts = [r.kernel_start_s for r in runs]
    return {
        "chapter": runs[0].chapter,
        "learners": len(runs),
        "completed": sum(r.completed for r in runs),
        "run_s_p50": percentile(times, 50),
        "run_s_p95": percentile(times, 95),
        "kernel_start_s_p50": percentile(starts, 50),
        "kernel_start_s_p95": percentile(starts, 95),
        "cpu_s_mean": statistics.fmean(r.cpu_s for r in runs),
        "server_start_cpu_s_mean": statistics.fmean(r.server_start_cpu_s for r in runs),
        "peak_rss_mb_mean": statistics.fmean(r.peak_rss_mb for r in runs),
        "peak_rss_mb_max": max(r.peak_rss_mb for r in runs),
        "uss_mb_mean": statistics.fmean(r.uss_mb for r in runs),
        "uss_mb_max": max(r.uss_mb for r in runs),
        "machine_mb_per_learner": (
            memory_drop_mb / len(runs) if memory_drop_mb is not None else None
        ),
        "runs": [asdict(r) for r in runs],
    }


def format_report(report: dict) -> str:
    """The summary as lines of text, then one line per learner."""
    lines = [
        f"chapter {report['chapter']}: {report['completed']}/{report['learners']} learners ran "
        "every cell (percentiles: nearest rank)",
        f"  run all cells:  p50 {report['run_s_p50']:.1f} s, p95 {report['run_s_p95']:.1f} s"
        f"   (kernel start p50 {report['kernel_start_s_p50']:.1f} s, "
        f"p95 {report['kernel_start_s_p95']:.1f} s)",
        f"  CPU per learner: {report['cpu_s_mean']:.1f} s for the chapter "
        f"(+ {report['server_start_cpu_s_mean']:.1f} s to start their server)",
        f"  memory per learner (server + kernel): peak RSS mean {report['peak_rss_mb_mean']:.0f} "
        f"MB, max {report['peak_rss_mb_max']:.0f} MB; unique (USS) mean "
        f"{report['uss_mb_mean']:.0f} MB, max {report['uss_mb_max']:.0f} MB",
    ]
    if report.get("machine_mb_per_learner") is not None:
        lines.append(
            f"  machine's available memory dropped by {report['machine_mb_per_learner']:.0f} MB "
            "per learner"
        )
    for run in report["runs"]:
        verdict = "ok" if run["completed"] else f"FAILED at cell {run['cells_ok'] + 1}"
        lines.append(
            f"    {run['name']}: {run['run_s']:6.1f} s, {run['cpu_s']:5.1f} CPU-s, "
            f"peak RSS {run['peak_rss_mb']:5.0f} MB, USS {run['uss_mb']:5.0f} MB, "
            f"{run['cells_ok']}/{run['cells']} cells {verdict} {run['error']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m tfm_edu.teacher.classload --state hub --learners 8 --chapter 01`."""
    parser = argparse.ArgumentParser(
        prog="python -m tfm_edu.teacher.classload",
        description="N learners run one chapter at once through a running class hub.",
    )
    parser.add_argument("--hub", default="http://127.0.0.1:8000", help="the hub's URL")
    parser.add_argument("--state", type=Path, required=True, help="the hub's state folder")
    parser.add_argument("--admin", default="teacher", help="the teacher's account")
    parser.add_argument(
        "--password-file",
        type=Path,
        help="file holding the teacher's password (default: STATE/teacher-password)",
    )
    parser.add_argument("--learners", type=int, default=8, help="how many learners (8)")
    parser.add_argument("--chapter", action="append", help="chapter number, e.g. 01 (repeat)")
    parser.add_argument("--json", type=Path, help="also write the reports to this file")
    parser.add_argument("--keep", action="store_true", help="keep the learners' accounts")
    args = parser.parse_args(argv)
    if not 1 <= args.learners <= 200:
        parser.error("--learners must be between 1 and 200")
    password_file = args.password_file or args.state / "teacher-password"
    if not password_file.exists():
        parser.error(f"{password_file} not found: is --state the hub's state folder?")
    password = password_file.read_text(encoding="utf-8").strip()
    run_id = secrets.token_hex(2)
    baseline = available_mb()
    names = [f"load{run_id}-{i:02d}" for i in range(1, args.learners + 1)]
    try:
        teacher, learners = create_learners(args.hub, args.admin, password, names)
    except (OSError, RuntimeError) as error:
        print(f"error: {error} (is the hub running at {args.hub}?)", file=sys.stderr)
        return 2
    reports = []
    try:
        seconds = start_servers(teacher, learners)
        print(f"{len(learners)} servers ready in {seconds:.1f} s", flush=True)
        for chapter in args.chapter or ["01"]:
            runs, memory_drop = run_chapter(learners, chapter, baseline_mb=baseline)
            report = summarize(runs, memory_drop)
            print(format_report(report), flush=True)
            reports.append(report)
    finally:
        if not args.keep:
            remove_learners(teacher, learners, args.state)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1), encoding="utf-8")
    return 0 if all(r["completed"] == r["learners"] for r in reports) else 1


# -- running a chapter: REST to open it and start a kernel, the websocket to run its cells --


async def _run_all(learners, chapter, timeout):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(2 * len(learners) + 2))
    peaks = {learner.name: 0.0 for learner in learners}
    lowest = [available_mb()]
    done = asyncio.Event()

    async def sample():  # peak RSS of each learner's process tree, and the machine's low point
        while not done.is_set():
            for learner in learners:
                peaks[learner.name] = max(peaks[learner.name], _tree_mb(learner.pid, "rss"))
            lowest[0] = min(lowest[0], available_mb())
            try:
                await asyncio.wait_for(done.wait(), SAMPLE_SECONDS)
            except asyncio.TimeoutError:
                pass

    sampler = asyncio.create_task(sample())
    try:
        runs = await asyncio.gather(*(_run_one(l, chapter, timeout, peaks) for l in learners))
    finally:
        done.set()
        await sampler
    return list(runs), lowest[0]


async def _run_one(learner: Learner, chapter: str, timeout: float, peaks: dict) -> LearnerRun:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    def call(method, path, body=None):
        return asyncio.get_running_loop().run_in_executor(
            None, lambda: learner.client.request(method, path, body=body)
        )

    base = f"/user/{learner.name}"
    cpu_before = _tree_cpu(learner.pid)
    listing = (await call("GET", f"{base}/api/contents/")).json()
    names = sorted(i["name"] for i in listing["content"] if i["name"].startswith(f"{chapter}_"))
    if not names or not names[0].endswith(".ipynb"):
        raise RuntimeError(f"no chapter {chapter} in {learner.name}'s home")
    notebook = (await call("GET", f"{base}/api/contents/{names[0]}")).json()["content"]
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]

    started = time.monotonic()
    body = {"path": names[0], "type": "notebook", "name": names[0], "kernel": {"name": "tfm-edu"}}
    session = await call("POST", f"{base}/api/sessions", body)
    if session.status != 201:
        raise RuntimeError(f"{learner.name}: no kernel ({session.status} {session.text[:200]})")
    kernel = session.json()["kernel"]["id"]
    url = learner.client.hub.replace("http", "ws", 1) + f"{base}/api/kernels/{kernel}/channels"
    headers = {"Authorization": f"token {learner.token}"}
    socket = await websocket_connect(HTTPRequest(url, headers=headers), max_message_size=1 << 28)
    client_session = secrets.token_hex(8)
    deadline = started + timeout
    ok, error, kernel_start, run_start = 0, "", 0.0, time.monotonic()
    try:
        await _request(socket, client_session, "kernel_info_request", {}, deadline)
        kernel_start = time.monotonic() - started
        run_start = time.monotonic()
        for cell in cells:
            expected_error = "raises-exception" in cell["metadata"].get("tags", [])
            content = _execute(_source(cell), stop_on_error=not expected_error)
            reply = await _request(socket, client_session, "execute_request", content, deadline)
            if reply.get("status") != "ok" and not expected_error:
                error = f"{reply.get('ename', reply.get('status'))}: {reply.get('evalue', '')}"
                break
            ok += 1
    except (TimeoutError, asyncio.TimeoutError):  # the same class from Python 3.11 on
        error = f"timed out after {timeout:.0f} s"
    finally:
        socket.close()
    run_s = time.monotonic() - run_start
    cpu = _tree_cpu(learner.pid) - cpu_before
    uss = _tree_mb(learner.pid, "uss")
    await call("DELETE", f"{base}/api/sessions/{session.json()['id']}")
    return LearnerRun(
        name=learner.name,
        chapter=chapter,
        cells=len(cells),
        cells_ok=ok,
        completed=ok == len(cells),
        error=error,
        kernel_start_s=round(kernel_start, 2),
        run_s=round(run_s, 2),
        cpu_s=round(cpu, 2),
        server_start_cpu_s=round(learner.start_cpu_s, 2),
        peak_rss_mb=round(max(peaks[learner.name], _tree_mb(learner.pid, "rss")), 1),
        uss_mb=round(uss, 1),
    )


def _execute(code: str, stop_on_error: bool = True) -> dict:
    return {"code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": stop_on_error}  # fmt: skip


async def _request(socket, session: str, msg_type: str, content: dict, deadline: float) -> dict:
    """Send one shell request; return its reply's content once the kernel is idle again."""
    msg_id = secrets.token_hex(8)
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    header = {"msg_id": msg_id, "msg_type": msg_type, "session": session, "username": "",
              "version": "5.3", "date": date}  # fmt: skip
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content,
               "channel": "shell", "buffers": []}  # fmt: skip
    await socket.write_message(json.dumps(message))
    reply, idle = None, False
    while reply is None or not idle:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        frame = await asyncio.wait_for(socket.read_message(), left)
        if frame is None:
            raise RuntimeError("the kernel's websocket closed")
        if isinstance(frame, bytes):  # a message with binary buffers (widgets): not ours
            continue
        message = json.loads(frame)
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["header"]["msg_type"]
        if kind == msg_type.replace("_request", "_reply"):
            reply = message["content"]
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            idle = True
    return reply


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _tree(pid: int):
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_mb(pid: int, kind: str) -> float:
    """Summed RSS or USS (MB) of a process and its descendants; 0 if it cannot be read."""
    import psutil

    total = 0
    for process in _tree(pid) if pid else []:
        try:
            info = process.memory_full_info() if kind == "uss" else process.memory_info()
            total += getattr(info, kind)
        except psutil.Error:
            pass
    return total / 2**20


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants."""
    import psutil

    total = 0.0
    for process in _tree(pid) if pid else []:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


if __name__ == "__main__":
    raise SystemExit(main())
