"""`make lab LANG=zh`: JupyterLab's own menus in Chinese, seen in headless Debian chromium.

The test asks make what `make lab LANG=zh` would run (`make -n`), builds the one prerequisite
that sets the language (the `zh` extra and its settings file), starts JupyterLab with exactly
the settings folder that command names, and reads the menu bar as a learner sees it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, jupyter_lab_server, require_chromium

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tfm-edu-zh-test"
SETTINGS_FLAG = re.compile(r"--LabApp\.app_settings_dir=(\S+)")


def make(*args: str, lang: str) -> str:
    env = dict(os.environ, LANG=lang)
    env.pop("MAKEFLAGS", None)  # run from `make test`: no -j or -s of the outer make
    done = subprocess.run(
        ["make", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_make_lab_lang_zh_shows_jupyterlab_in_chinese(tmp_path: Path):
    require_chromium()
    assert not SETTINGS_FLAG.search(make("-n", "lab", lang="C.UTF-8"))  # English by default
    (settings,) = SETTINGS_FLAG.findall(make("-n", "lab", lang="zh"))
    assert SETTINGS_FLAG.findall(make("-n", "lab", lang="zh_CN.UTF-8")) == [settings]
    make(".venv/.zh", lang="C.UTF-8")  # the language pack and the settings file it names
    env = dict(os.environ, LANG="C.UTF-8", JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user"))
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR"):
        env[name] = str(tmp_path / name.lower())
    with jupyter_lab_server(
        tmp_path,
        token=TOKEN,
        env=env,
        args=[f"--LabApp.app_settings_dir={settings}"],
        log=tmp_path / "jupyter.log",
    ) as url:
        playwright = pytest.importorskip("playwright.sync_api")
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
            )
            try:
                page = browser.new_page()
                page.goto(f"{url}/lab?token={TOKEN}")
                menus = page.locator(".lm-MenuBar-itemLabel")
                page.wait_for_function(
                    "document.querySelector('.lm-MenuBar-itemLabel')?.textContent === '文件'",
                    timeout=60_000,
                )
                labels = menus.all_inner_texts()
                page.screenshot(path=str(tmp_path / "lab-zh.png"))
            finally:
                browser.close()
        # File, Edit, View, Run, Kernel, Settings, Help
        for label in ("文件", "编辑", "查看", "运行", "内核", "设置", "帮助"):
            assert label in labels, f"{label} not in the menu bar {labels}"
