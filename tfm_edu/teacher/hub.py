"""A JupyterHub for a class on one machine: one login per learner, one JupyterLab each.

    python -m tfm_edu.teacher.hub --state hub [--port 8000] [--admin teacher]   (`make hub`)

A JupyterHub is three kinds of process. The *hub* (this command) keeps the accounts and starts
one *single-user server* per learner: a JupyterLab from this virtualenv, whose kernels run the
course's `tfm-edu` kernel. A *proxy* (configurable-http-proxy, here its Python implementation,
so no Node.js) is the only port a browser talks to: it forwards `/hub/...` to the hub and
`/user/NAME/...` to NAME's server, which only answers requests carrying NAME's login.

How a class uses it:

1. The teacher runs `make hub`. The first start writes `hub/`: the hub's database and cookie
   secret, `jupyterhub_config.py` (the settings below; add your own at its end, it is never
   overwritten), and the teacher's password in `hub/teacher-password` (the account `teacher`
   exists from the start, so nobody else can claim the name).
2. Each learner signs up at http://HOST/hub/signup with a name and a password of their choice.
3. The teacher logs in and clicks "Authorize" beside each name at http://HOST/hub/authorize:
   only names the teacher recognises get in. (A learner who forgot a password: the teacher sets
   a new one at /hub/change-password/NAME.)
4. A learner's first login writes the chapters, solutions removed, into their home
   `hub/homes/NAME/` (`student_copies`); each later login updates the chapters they have not
   edited and keeps the ones they have. JupyterLab opens on chapter 00.

What it does not give you: every learner's server runs as the Unix user who started the hub
(JupyterHub's `SimpleLocalProcessSpawner`). The hub keeps learners apart over HTTP -- a learner's
login or token opens only their own server -- but code a learner runs in a kernel can read the
other homes and processes. Fine for a class that trusts itself on a machine you own; for real
isolation use The Littlest JupyterHub (a Unix user per learner) or Zero to JupyterHub on
Kubernetes (a container per learner), see README. Local processes cannot be given memory or CPU
limits by this spawner: size the machine instead (`python -m tfm_edu.teacher.classload`).
The hub listens on 127.0.0.1 only: to serve a class over the network, put a TLS reverse proxy
in front of it (README).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import secrets
import socket
import sys
from pathlib import Path

from tfm_edu.teacher.student_copies import write_student_copies

__all__ = [
    "CONFIG_NAME",
    "NBGRADER_LAB_EXTENSION",
    "PASSWORD_NAME",
    "configure",
    "write_config",
    "main",
]

ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOKS = ROOT / "notebooks"  # the teacher's edition; learners get copies without solutions
VENV_BIN = Path(sys.executable).parent  # jupyterhub-singleuser and the proxy come from here
CONFIG_NAME = "jupyterhub_config.py"
PASSWORD_NAME = "teacher-password"
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"  # JupyterHub lower-cases names first
TEACHER_EXTRA = ("jupyterhub", "nativeauthenticator", "configurable_http_proxy", "psutil")

# What the first start writes into the state folder. Edits below the marked line are kept.
CONFIG_TEMPLATE = '''\
"""JupyterHub settings for the tfm-edu class (written by `python -m tfm_edu.teacher.hub`).

`configure` sets what the course needs; its docstring lists each setting
(python -c "import tfm_edu.teacher.hub as h; help(h.configure)"). Port and admin come from
the command line (`--port`, `--admin`), through the environment variables read here.
"""

import os
from pathlib import Path

from tfm_edu.teacher.hub import configure

c = get_config()  # noqa: F821 (JupyterHub defines it)
configure(
    c,
    state=Path(__file__).resolve().parent,
    port=int(os.environ.get("TFM_HUB_PORT", "8000")),
    admin=os.environ.get("TFM_HUB_ADMIN", "teacher"),
)

# Your own settings below this line are kept when the course is updated. For example:
# c.Spawner.args.append("--MappingKernelManager.cull_idle_timeout=1800")  # free idle kernels
# c.NativeAuthenticator.minimum_password_length = 12
'''


def configure(
    c,
    *,
    state: Path,
    port: int = 8000,
    admin: str = "teacher",
    notebooks: Path = NOTEBOOKS,
    threads_per_learner: int = 1,
) -> None:
    """Set a JupyterHub config object `c` for the class.

    Args:
        c: the traitlets config a `jupyterhub_config.py` gets from `get_config()`.
        state: folder for the hub's database, cookie secret, teacher password and learners'
            homes (`state/homes/NAME`).
        port: the port of the proxy, the one address learners open (on 127.0.0.1).
        admin: the teacher's account name; its password is read from `state/teacher-password`
            when the account does not exist yet.
        notebooks: the chapters copied into each home, solutions removed.
        threads_per_learner: OMP_NUM_THREADS of each learner's kernels; 1 keeps 30 learners
            on 16 cores from slowing one another down by oversubscription.
    """
    state = Path(state).resolve()
    homes = state / "homes"

    # Where it listens: the proxy on loopback; the hub and the proxy's API on free ports, so
    # that two hubs (yours and a test's) can run side by side.
    c.JupyterHub.bind_url = f"http://127.0.0.1:{port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{_free_port()}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{_free_port()}"
    c.ConfigurableHTTPProxy.command = [str(VENV_BIN / "configurable-http-proxy")]
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

    # What it keeps: everything inside the state folder, nothing in the course's files.
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True  # stopping the hub stops every learner's server

    # Who gets in: accounts with passwords, created at /hub/signup and authorized by the
    # teacher at /hub/authorize; the teacher's own account exists from the first start.
    c.JupyterHub.authenticator_class = _course_authenticator()
    c.Authenticator.admin_users = {admin}
    # A name is a folder name (homes/NAME): letters, digits, "_", "." and "-", never "." or "..".
    c.Authenticator.username_pattern = USERNAME_PATTERN
    c.NativeAuthenticator.allow_all = True  # every *authorized* account (the teacher decides)
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.minimum_password_length = 8
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = 5  # then a 10-minute wait for that name
    c.CourseAuthenticator.password_file = str(state / PASSWORD_NAME)

    # What each learner runs: JupyterLab from this virtualenv, in their own home, as the Unix
    # user who started the hub (see the module docstring for what that does not isolate).
    c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(homes / "{username}")
    c.Spawner.notebook_dir = str(homes / "{username}")
    c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab/tree/00_start_here.ipynb"
    c.Spawner.pre_spawn_hook = _student_copies_hook(Path(notebooks))
    c.Spawner.environment = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "OMP_NUM_THREADS": str(threads_per_learner),
        # Learners see the course, not the teacher's tools (nbgrader shares this virtualenv).
        "JUPYTER_CONFIG_PATH": str(_learner_jupyter_config(state / "learner-jupyter")),
    }
    c.Spawner.args = [
        # Free what learners forget: a kernel idle for an hour is shut down (its variables are
        # lost, the notebook is not), a server with no activity for two hours stops itself.
        "--MappingKernelManager.cull_idle_timeout=3600",
        "--MappingKernelManager.cull_interval=300",
        "--ServerApp.shutdown_no_activity_timeout=7200",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        c.Spawner.args.append("--allow-root")  # Jupyter refuses root without it
    # Eight servers starting at once on two cores take longer than the default 30/60 s.
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 120
    # No memory or CPU limit: LocalProcessSpawner cannot enforce `mem_limit`/`cpu_limit`
    # (TLJH's systemd spawner and Kubernetes can).


def write_config(state: Path) -> Path:
    """Write `state/jupyterhub_config.py` unless it exists (a teacher's edits are kept)."""
    path = Path(state) / CONFIG_NAME
    if not path.exists():
        path.write_text(CONFIG_TEMPLATE, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m tfm_edu.teacher.hub --state DIR [--port 8000] [--admin teacher]`."""
    parser = argparse.ArgumentParser(
        prog="python -m tfm_edu.teacher.hub",
        description="Run a JupyterHub for a class on this machine (127.0.0.1).",
    )
    parser.add_argument("--state", type=Path, required=True, help="folder for the hub's files")
    parser.add_argument("--port", type=int, default=8000, help="port learners open (8000)")
    parser.add_argument("--admin", default="teacher", help="the teacher's account (teacher)")
    args = parser.parse_args(argv)
    if not re.fullmatch(USERNAME_PATTERN, args.admin):
        parser.error(f"--admin {args.admin!r}: lower-case letters, digits, '_', '.', '-' only")

    missing = [name for name in TEACHER_EXTRA if not _importable(name)]
    if missing:
        print(
            f"error: {', '.join(missing)} not installed. `make hub` installs the teacher's tools "
            "(or: .venv/bin/pip install -e '.[teacher]')",
            file=sys.stderr,
        )
        return 2
    if not NOTEBOOKS.is_dir():
        print(f"error: no chapters at {NOTEBOOKS}: run the hub from a clone", file=sys.stderr)
        return 2
    if not _port_is_free(args.port):
        print(
            f"error: port {args.port} on 127.0.0.1 is in use (another hub? stop it, or pass "
            "--port with a free one)",
            file=sys.stderr,
        )
        return 2
    state = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)  # the database, cookie secret and password are the hub's alone
    (state / "homes").mkdir(exist_ok=True)
    config = write_config(state)
    password_file = state / PASSWORD_NAME
    if password_file.exists():
        password = f"yours (the first one is in {password_file})"
    else:
        password = _new_password(password_file)
    print(
        f"Class hub on http://127.0.0.1:{args.port} (state in {state})\n"
        f"  teacher: log in as '{args.admin}', password: {password};"
        " change it at /hub/change-password\n"
        "  learners: sign up at /hub/signup, then you authorize them at /hub/authorize\n"
        "  stop it with Ctrl-C (this stops every learner's server)",
        flush=True,
    )
    os.environ["TFM_HUB_PORT"] = str(args.port)
    os.environ["TFM_HUB_ADMIN"] = args.admin
    os.chdir(state)  # JupyterHub writes a few files into its working folder

    from jupyterhub.app import JupyterHub

    JupyterHub.launch_instance([f"--config={config}"])
    return 0


def _course_authenticator():
    """NativeAuthenticator whose admin accounts exist from the first start (no race to claim
    the teacher's name), their password read from a file the hub's launcher wrote."""
    from nativeauthenticator import NativeAuthenticator
    from traitlets import Unicode

    class CourseAuthenticator(NativeAuthenticator):
        """NativeAuthenticator that creates the admin accounts at start-up."""

        password_file = Unicode(help="file holding the admins' first password").tag(config=True)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for name in sorted(self.admin_users):
                if not self.user_exists(name) and self.password_file:
                    password = Path(self.password_file).read_text(encoding="utf-8").strip()
                    if self.create_user(name, password) is None:
                        raise ValueError(f"could not create the account {name!r}")
                    self.log.info("Created %s's account (password in %s)", name, self.password_file)

    return CourseAuthenticator


# nbgrader's server extensions and JupyterLab menu, which the teacher's install enables for
# everyone using this virtualenv; a config folder on the learners' JUPYTER_CONFIG_PATH, which
# Jupyter reads before the virtualenv's own, switches them off in learners' servers only.
NBGRADER_SERVER_EXTENSIONS = ("assignment_list", "course_list", "formgrader", "validate_assignment")
NBGRADER_LAB_EXTENSION = "@jupyter/nbgrader"


def _learner_jupyter_config(folder: Path) -> Path:
    """Write the learners' Jupyter config folder (nbgrader off) and return it."""
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    off = {f"nbgrader.server_extensions.{name}": False for name in NBGRADER_SERVER_EXTENSIONS}
    server = {"ServerApp": {"jpserver_extensions": off}}
    (folder / "jupyter_server_config.json").write_text(json.dumps(server, indent=1))
    page = {"disabledExtensions": {NBGRADER_LAB_EXTENSION: True}}
    (folder / "labconfig" / "page_config.json").write_text(json.dumps(page, indent=1))
    return folder


def _student_copies_hook(notebooks: Path):
    """A pre_spawn_hook: write (or update) the learner's copies of the chapters in their home."""

    async def write_copies(spawner) -> None:
        home = Path(spawner.home_dir)
        home.mkdir(parents=True, exist_ok=True)
        # In a thread: the hub keeps answering other learners while the copies are written.
        written = await asyncio.to_thread(write_student_copies, notebooks, home)
        spawner.log.info("%s: %d chapters copied into %s", spawner.user.name, len(written), home)

    return write_copies


def _new_password(path: Path) -> str:
    """The teacher's first password, written to `path`, readable only by this Unix user."""
    password = secrets.token_urlsafe(12)
    path.touch(mode=0o600)
    path.write_text(password + "\n", encoding="utf-8")
    return password


def _importable(name: str) -> bool:
    """Installed? (found without importing it)"""
    return importlib.util.find_spec(name) is not None


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds it
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    raise SystemExit(main())
