"""What the tests that drive JupyterLab in headless Debian chromium share (see DESIGN.md,
"Browser checks"): the browser and its flags, a free loopback port, and "Run All" retried."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "NOTEBOOK",
    "free_port",
    "jupyter_lab_server",
    "require_chromium",
    "run_cells",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"  # the notebook on show


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_lab_server(
    root: Path, *, token: str, env: dict[str, str], args: Sequence[str] = (), log: Path
) -> Iterator[str]:
    """A JupyterLab serving `root` on a free loopback port: yields its URL once it answers,
    then stops it (SIGINT: Jupyter's clean shutdown also stops its kernels). Its output goes to
    `log`, shown if it does not start within 90 s."""
    port = free_port()
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *args,
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        output.flush()
                        pytest.fail(f"JupyterLab did not start:\n{log.read_text()}")
                    time.sleep(0.5)
            yield url
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)


def require_chromium() -> None:
    """Skip (or, with REQUIRE_BROWSER=1 as in CI, fail) when Debian's chromium is missing."""
    if not CHROMIUM.exists():
        message = (
            "/usr/bin/chromium is missing: apt-get install -y chromium (make browser-test does)"
        )
        if os.environ.get("REQUIRE_BROWSER") == "1":  # CI sets it: never pass by skipping
            pytest.fail(message)
        pytest.skip(message)


def run_cells(page, last: int | None = None, attempts: int = 5) -> None:
    """Run cells 0..last of the notebook on show (all of them when `last` is None), retried: a
    command sent right after start-up is sometimes lost (DESIGN.md). Needs JupyterLab started
    with `--LabApp.expose_app_in_browser=True`.

    Not awaited: the command's promise only settles when every cell has run. Started means some
    input prompt shows "[*]" within a few seconds.
    """
    last = 10**9 if last is None else last
    for _ in range(attempts):
        page.locator(f"{NOTEBOOK} .jp-Cell").first.click()
        page.evaluate(
            """(last) => { const notebook = window.jupyterapp.shell.currentWidget.content;
            if (last + 1 >= notebook.widgets.length) {
              window.jupyterapp.commands.execute('notebook:run-all-cells');
            } else {
              notebook.activeCellIndex = last + 1;
              window.jupyterapp.commands.execute('notebook:run-all-above');
            }
            return 1; }""",
            last,
        )
        try:
            page.wait_for_function(
                "Array.from(document.querySelectorAll('.jp-InputPrompt'))"
                ".some(e => e.textContent.includes('*'))",
                timeout=8_000,
            )
            return
        except Exception:  # Playwright's TimeoutError: try again
            continue
    pytest.fail(f"Running the cells did not start after {attempts} attempts")
