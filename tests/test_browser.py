"""The text explorers as a learner sees them: JupyterLab + headless Debian chromium, via Playwright.

One JupyterLab server (127.0.0.1, fixed token, isolated Jupyter directories) serves copies of
the notebooks whose `AttentionExplorer`s read text (chapters 01, 02, 05, 06 and 07). For each
notebook the test runs every cell, then drives every explorer as a learner would, through its
own text boxes and dropdowns:

- a grid view (all heads of one layer, or one head in every layer),
- one head of one layer,
- a one-token input ("a") and a long one (70 words, more than a window holds),

and reads what the browser drew: the tick labels of every labelled axis (`.xtick text` /
`.ytick text` in each subplot) must name every token the heatmap holds, and the figure must keep
a readable size (figure, colour bar, its tick labels not overlapping, the title inside the
figure). In chapter 07 a typed sentence must show its WordPiece tokens. Only the cells up to
the last explorer run. A scratch notebook checks chapters 03 and 08's explorers: whole-number
ticks for 2 positions x 2 dimensions, an odd d_model typed into the slider's box rounded to an
even one (and said), and the ViT explorer's head dropdown in rollout mode. Another scratch
notebook drives chapter 09's `GenerationExplorer` on the shipped character GPT as a learner would:
a typed prompt (Enter) shows the bar chart of its 20 most likely next characters, top-k typed
into the slider's box changes it, "sample one" grows the prompt by one character, an empty prompt
shows the error note and no figure, and a 300-character prompt the notice that it was cut.
Screenshots are saved in the test's temporary directory. Run it with `make browser-test` (which
installs chromium with apt where it can) or `pytest -m browser tests/test_browser.py`.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_helpers import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    NOTEBOOK,
    jupyter_lab_server,
    require_chromium,
    run_cells,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [
    "01_attention_numpy.ipynb",
    "02_multi_head_attention_pytorch.ipynb",
    "05_decoder_seq2seq.ipynb",
    "06_bert_pretraining_finetuning.ipynb",
    "07_real_bert_attention.ipynb",
]
TOKEN = "tfm-edu-browser-test"
NEW_SENTENCE = "Giraffes sleep standing up"
SHORT = "a"
LONG = " ".join(["the cat sat on the mat because it was tired"] * 7)  # 70 words, 250+ chars
LONGEST = {"05": "on Tuesday, the 3rd of March 1998, in the evening"[:48]}  # its model's limit
MIN_FIGURE_PX = (320, 300)  # (width, height) of the whole figure
MIN_COLORBAR_PX = 120  # height of the colour bar


@dataclass(frozen=True)
class _Lab:
    url: str  # http://127.0.0.1:port
    root: Path  # the folder it serves (notebooks/, tests/, data/)


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server on copies of the notebooks; yields its URL and folder, then stops."""
    require_chromium()
    tmp_path = tmp_path_factory.mktemp("browser")
    lab = tmp_path / "lab"
    (lab / "notebooks").mkdir(parents=True)
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, lab / "notebooks" / name)
    (lab / "data").symlink_to(ROOT / "data")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR"):
        env[name] = str(tmp_path / name.lower())
        Path(env[name]).mkdir()
    # Every cell in the DOM (no windowing), so that each explorer's cell can be found by index.
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "lab-settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
    with jupyter_lab_server(
        lab,
        token=TOKEN,
        env=env,
        args=["--LabApp.expose_app_in_browser=True"],
        log=tmp_path / "jupyter.log",
    ) as url:
        yield _Lab(url, lab)


@pytest.fixture(scope="module")
def browser(jupyter_lab, tmp_path_factory):
    """One headless chromium (a fresh profile) for every notebook."""
    playwright = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _stop_kernels(url: str) -> None:
    """Shut every kernel down, so that the next notebook has the CPUs to itself."""
    with urllib.request.urlopen(f"{url}/api/sessions?token={TOKEN}", timeout=10) as reply:
        sessions = json.load(reply)
    for session in sessions:
        request = urllib.request.Request(
            f"{url}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=10)


def _explorer_cells(name: str) -> list[tuple[int, bool]]:
    """(cell index, pair mode) of every code cell that shows an AttentionExplorer."""
    notebook = json.loads((ROOT / "notebooks" / name).read_text())
    found = []
    for index, cell in enumerate(notebook["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "AttentionExplorer(" in source:
            found.append((index, "pair=True" in source))
    return found


# What the browser drew, read from the figure's DOM and plotly's own layout: for every axis of
# every heatmap, the categories it holds and the tick labels shown in that axis's subplot.
_READ_FIGURE = """(plot) => {
  const layout = plot._fullLayout;
  const clean = (s) => String(s).replaceAll('\\u200b', '').trim();
  const box = (e) => { const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, height: r.height}; };
  const axes = [];
  for (const trace of plot._fullData) {
    if (trace.type !== 'heatmap') continue;
    for (const [letter, categories] of [['x', trace.x], ['y', trace.y]]) {
      const id = trace[letter + 'axis'];
      const axis = layout[letter + 'axis' + id.slice(1)];
      const ticks = plot.querySelectorAll(  // plotly names them .xtick, .x2tick, ...
        `.subplot.${axis._mainSubplot} .${letter}axislayer-above .${axis._id}tick text`);
      axes.push({id, letter, expected: Array.from(categories, clean),
                 shown: Array.from(ticks, (e) => clean(e.textContent))});
    }
  }
  const svg = plot.querySelector('.main-svg');
  const title = plot.querySelector('.gtitle');
  const bar = plot.querySelector('.colorbar');
  const barTicks = bar ? Array.from(bar.querySelectorAll('.ytick text, .cbaxis text'), box) : [];
  const texts = Array.from(plot.querySelectorAll('.annotation-text, .xtitle, .ytitle, .gtitle'),
                           (e) => clean(e.textContent));
  const stride = (layout.meta && layout.meta.label_stride) || {};
  return {axes, texts, stride, width: layout.width, height: layout.height, svg: box(svg),
          title: title ? {text: clean(title.textContent), box: box(title)} : null,
          layoutTitle: clean((layout.title && layout.title.text) || ''),
          bar: bar ? box(bar.querySelector('.cbbg') || bar) : null, barTicks};
}"""


# What identifies the figure a cell shows: its title and the tokens on its axes ("" while
# plotly has not drawn it yet).
_SIGNATURE = """(cell) => {
  const plots = cell.querySelectorAll('.js-plotly-plot');
  const plot = plots[plots.length - 1];
  if (!plot || !plot._fullLayout || !plot.querySelector('.main-svg')) return '';
  return JSON.stringify([plot._fullLayout.title && plot._fullLayout.title.text,
                         plot.data.map((t) => [t.x, t.y])]);
}"""


def _check_figure(info: dict, what: str, *, grid: bool) -> None:
    """Every token labelled on every labelled axis, and a figure of readable size."""
    labelled = [axis for axis in info["axes"] if axis["shown"]]
    assert labelled, f"{what}: no axis has tick labels: {info['axes']}"
    for letter in "xy":
        assert any(a["id"].startswith(letter) for a in labelled), f"{what}: no {letter} labels"
    for axis in labelled:
        # a grid may label every k-th token when cells are small, and must then say so
        stride = int(info["stride"].get(axis["letter"], 1)) if grid else 1
        shown = Counter(html.unescape(t) for t in axis["shown"])
        expected = Counter(html.unescape(t) for t in axis["expected"][::stride])
        assert shown == expected, (
            f"{what}: axis {axis['id']} labels {sorted(shown.elements())} but holds "
            f"{sorted(expected.elements())} (labelling every {stride})"
        )
        if stride > 1:
            assert any("labelled" in text for text in info["texts"]), f"{what}: {info['texts']}"
    width, height = MIN_FIGURE_PX
    assert info["width"] >= width and info["height"] >= height, f"{what}: figure {info}"
    assert info["bar"] and info["bar"]["height"] >= MIN_COLORBAR_PX, f"{what}: colour bar {info}"
    ticks = sorted(info["barTicks"], key=lambda b: b["top"])
    for upper, lower in zip(ticks, ticks[1:], strict=False):
        assert upper["bottom"] <= lower["top"] + 1, f"{what}: colour bar labels overlap {ticks}"
    if info["layoutTitle"]:
        title, svg = info["title"], info["svg"]
        assert title and title["text"] == info["layoutTitle"], f"{what}: title {info}"
        inside = svg["left"] - 1 <= title["box"]["left"] and title["box"]["right"] <= svg["right"]
        assert inside, f"{what}: the title runs out of the figure: {title} in {svg}"


class _Explorer:
    """One explorer's controls and figure, inside its notebook cell."""

    def __init__(self, page, cell_index: int, pair: bool, name: str) -> None:
        self.page, self.pair, self.name = page, pair, f"{name} cell {cell_index}"
        self.cell = page.locator(f"{NOTEBOOK} .jp-Cell").nth(cell_index)
        self.boxes = self.cell.locator(".widget-text input")
        self.cell.scroll_into_view_if_needed()
        self.cell.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)

    def dropdown(self, label: str):
        return self.cell.locator(f".widget-dropdown:has(label:text-is('{label}')) select")

    def selected(self, label: str) -> str:
        text = self.dropdown(label).evaluate("s => s.options[s.selectedIndex].text")
        return text.replace("\xa0", " ")  # ipywidgets writes its option labels with nbsp

    def _changed(self, action) -> None:
        """Do `action`, then wait until the explorer has drawn a different figure (plotly may
        redraw in the same element, or the Output may put a new one in its place)."""
        before = self.cell.evaluate(_SIGNATURE)
        action()
        try:
            self.page.wait_for_function(
                f"([c, before]) => {{ const now = ({_SIGNATURE})(c); "
                "return now !== '' && now !== before; }",
                arg=[self.cell.element_handle(), before],
                timeout=60_000,
            )
        except Exception:
            notes = self.cell.locator(".widget-html").all_inner_texts()
            controls = self.cell.locator(".widget-dropdown select").evaluate_all(
                "ss => ss.map(s => [s.selectedIndex, Array.from(s.options, o => o.text)])"
            )
            after = self.cell.evaluate(_SIGNATURE)
            pytest.fail(
                f"{self.name}: no new figure; the explorer says {notes}; dropdowns {controls}; "
                f"figure before {before[:300]!r}, now {after[:300]!r}"
            )

    def select(self, label: str, option: str) -> None:
        if self.selected(label) != option:
            self._changed(lambda: self.dropdown(label).select_option(label=option))

    def select_layer(self, position: int) -> None:
        """Choose the layer dropdown's option at `position` (0: all layers, 1: the first)."""
        option = self.dropdown("layer").evaluate(f"s => s.options[{position}].text")
        self.select("layer", option.replace("\xa0", " "))

    def type(self, text: str, text_b: str | None = None) -> None:
        for box, value in ((self.boxes.nth(0), text), (self.boxes.nth(1), text_b)):
            if value is not None and box.input_value() != value:
                self._changed(lambda box=box, value=value: (box.fill(value), box.press("Enter")))

    def figure(self) -> dict:
        plot = self.cell.locator(".js-plotly-plot").last
        return plot.evaluate(_READ_FIGURE)

    def check(self, what: str, *, grid: bool = False) -> dict:
        info = self.figure()
        _check_figure(info, f"{self.name}, {what}", grid=grid)
        return info


def _open_and_run(page, url: str, name: str, last: int) -> None:
    page.goto(f"{url}/lab/tree/notebooks/{name}?reset&token={TOKEN}")  # reset: only this one
    page.wait_for_selector(".jp-Notebook", timeout=120_000)
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
    run_cells(page, last)
    page.wait_for_function(
        "!Array.from(document.querySelectorAll('.jp-InputPrompt'))"
        ".some(e => e.textContent.includes('*'))",
        timeout=180_000,
    )  # every cell has run


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_text_explorers_label_every_token(jupyter_lab, browser, tmp_path, name):
    cells = _explorer_cells(name)
    assert cells, f"{name} has no AttentionExplorer cell"
    page = browser.new_page()
    try:
        _open_and_run(page, jupyter_lab.url, name, last=max(index for index, _ in cells))
        for index, pair in cells:
            explorer = _Explorer(page, index, pair, name)
            explorer.select("head", "all heads")  # a grid of heads (or of layers, for one head)
            if explorer.selected("layer").startswith("all layers"):
                explorer.select_layer(1)
            explorer.check("all heads of one layer", grid=True)
            explorer.select_layer(0)  # every layer x every head
            explorer.check("every layer x every head", grid=True)
            explorer.select_layer(1)
            explorer.select("head", "head 0")
            explorer.check("one head")
            explorer.type(SHORT, "b" if pair else None)
            explorer.check(f"input {SHORT!r}")
            long = LONGEST.get(name[:2], LONG)
            explorer.type(long, long if pair else None)
            explorer.check(f"a {len(long.split())}-word, {len(long)}-character input")
            if name.startswith("07") and not pair:
                _check_typed_sentence(explorer)
        page.screenshot(path=str(tmp_path / f"{name}.png"), timeout=30_000)
    finally:
        page.close()
        _stop_kernels(jupyter_lab.url)


def _check_typed_sentence(explorer: _Explorer) -> None:
    """Chapter 07: a typed sentence shows its own WordPiece tokens on the axis."""
    from tfm_edu.pretrained import minilm_dir
    from tfm_edu.tokenize import WordPiece

    expected = WordPiece.from_file(minilm_dir() / "vocab.txt").encoding(NEW_SENTENCE).tokens
    explorer.type(NEW_SENTENCE)
    info = explorer.check("a typed sentence")
    keys = [html.unescape(t) for t in info["axes"][0]["expected"]]
    assert keys == expected


# Chapters 03 and 08's explorers, each in a scratch notebook of one cell (no text to type, but
# controls a learner can misuse): typing an odd d_model into the slider's number box, a figure
# of 2 positions x 2 dimensions, and the ViT explorer's head dropdown in rollout mode.
_WIDGET_CELLS = [
    "from tfm_edu.viz import PositionalEncodingExplorer\n"
    "PositionalEncodingExplorer(d_model=2, n_positions=2, kind='rope')",
    "import torch\nfrom tfm_edu.models.vit import ViT, ViTConfig\n"
    "from tfm_edu.viz import ViTAttentionExplorer\ntorch.manual_seed(0)\n"
    "ViTAttentionExplorer(ViT(ViTConfig.tiny()), torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2]))",
    "import numpy as np\nfrom tfm_edu.viz import WeightOutliersExplorer\n"
    "w = np.random.default_rng(0).normal(size=(16, 8))\nspiky = w.copy()\nspiky[3] *= 40\n"
    "WeightOutliersExplorer({'plain': w, 'spiky': spiky})",
    "from tfm_edu.viz import DarkKnowledgeExplorer\n"
    "DarkKnowledgeExplorer([[4.0, 1.0, 0.0], [0.0, 3.0, 2.5]], [0, 1], ['a', 'b', 'c'])",
]


def _fits(select) -> bool:
    """Whether a dropdown's chosen option is drawn whole (text + arrow inside the box)."""
    return select.evaluate(
        "s => { const c = document.createElement('canvas').getContext('2d');"
        " c.font = getComputedStyle(s).font;"
        " return c.measureText(s.options[s.selectedIndex].text).width + 24 <= s.clientWidth; }"
    )


def test_positional_vit_outliers_and_dark_knowledge_explorer_controls(jupyter_lab, browser):
    import nbformat

    name = "widget_controls.ipynb"
    chapter = nbformat.read(ROOT / "notebooks" / NOTEBOOKS[0], 4)  # its kernel: no dialog
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in _WIDGET_CELLS],
        metadata=chapter.metadata,
    )
    nbformat.write(notebook, Path(jupyter_lab.root) / "notebooks" / name)
    page = browser.new_page()
    try:
        _open_and_run(page, jupyter_lab.url, name, last=len(_WIDGET_CELLS) - 1)
        cells = page.locator(f"{NOTEBOOK} .jp-Cell")
        positional, vit = cells.nth(0), cells.nth(1)
        positional.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
        ticks = positional.locator(".js-plotly-plot").last.evaluate(
            "p => Array.from(p.querySelectorAll('.xtick text, .ytick text'), e => e.textContent)"
        )
        assert ticks and all(t.replace("\u2212", "-").lstrip("-").isdigit() for t in ticks), ticks
        slider = positional.locator(".widget-slider:has(label:text-is('d_model'))")
        readout = slider.locator(".widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("3")
        page.keyboard.press("Enter")
        positional.get_by_text("rounded up to 4").wait_for(timeout=30_000)
        assert readout.inner_text().strip() == "4"
        assert "Error" not in " ".join(positional.locator(".widget-html").all_inner_texts())

        vit.locator(".widget-output img").first.wait_for(timeout=60_000)
        head = vit.locator(".widget-dropdown:has(label:text-is('head')) select")
        layer = vit.locator(".widget-dropdown:has(label:text-is('layer')) select")
        shown = head.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")
        assert shown == "all heads (rollout)" and head.is_disabled()
        assert _fits(head) and _fits(layer)
        layer.select_option(label="layer 0")
        page.wait_for_function("s => !s.disabled", arg=head.element_handle(), timeout=30_000)
        shown = head.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")
        assert shown == "mean of heads" and _fits(head)

        # Chapter 11: the outliers explorer opens on the spiky matrix and redraws on a new layer.
        outliers, dark = cells.nth(2), cells.nth(3)
        outliers.locator(".widget-output img").first.wait_for(timeout=60_000)
        outliers.get_by_text("spiky (16, 8)").wait_for(timeout=30_000)
        outliers.locator(".widget-dropdown select").select_option(label="plain")
        outliers.get_by_text("plain (16, 8)").wait_for(timeout=30_000)
        assert outliers.locator(".widget-output img").count() == 1

        # Chapter 10: the dark-knowledge explorer's input slider moves to the second input.
        dark.locator(".widget-output img").first.wait_for(timeout=60_000)
        dark.get_by_text("Input 0: a a;").wait_for(timeout=30_000)
        readout = dark.locator(".widget-slider:has(label:text-is('input')) .widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("1")
        page.keyboard.press("Enter")
        dark.get_by_text("Input 1: a b;").wait_for(timeout=30_000)
        assert "Error" not in " ".join(dark.locator(".widget-html").all_inner_texts())
    finally:
        page.close()
        _stop_kernels(jupyter_lab.url)


# Chapter 09's GenerationExplorer in a scratch notebook, driven through its own controls.
_GENERATION_CELL = (
    "from tfm_edu.pretrained import char_gpt\nfrom tfm_edu.viz import GenerationExplorer\n"
    "GenerationExplorer(*char_gpt(), prompt='The default value is ', seed=0)"
)
GENERATION_PROMPT = "Return the value of "
# The bar chart (the cell's first plot) as the browser shows it: the summary line, the x tick
# labels, and for each trace how many bars it has (a height of null draws none).
_BAR_CHART = """(cell) => {
  const plot = cell.querySelector('.js-plotly-plot');
  if (!plot || !plot._fullLayout || !plot.querySelector('.main-svg')) return null;
  const summary = plot._fullLayout.annotations.map((a) => a.text).join(' ');
  const ticks = Array.from(plot.querySelectorAll('.xtick text'), (e) => e.textContent);
  const drawn = {};
  for (const trace of plot._fullData) {
    drawn[trace.meta] = Array.from(trace.y).filter((y) => y !== null && y !== undefined).length;
  }
  return {summary, ticks, drawn};
}"""


def test_generation_explorer_as_a_learner(jupyter_lab, browser, tmp_path):
    import nbformat

    from tfm_edu.analysis import next_token_table
    from tfm_edu.pretrained import char_gpt

    name = "generation_explorer.ipynb"
    chapter = nbformat.read(ROOT / "notebooks" / NOTEBOOKS[0], 4)  # its kernel: no dialog
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(_GENERATION_CELL)], metadata=chapter.metadata
    )
    nbformat.write(notebook, Path(jupyter_lab.root) / "notebooks" / name)
    page = browser.new_page()
    try:
        try:
            _open_and_run(page, jupyter_lab.url, name, last=0)
        except Exception as error:  # say what blocked it, e.g. a dialog over the notebook
            dialogs = page.locator(".jp-Dialog").all_inner_texts()
            pytest.fail(f"the notebook did not run ({type(error).__name__}); dialogs: {dialogs}")
        cell = page.locator(f"{NOTEBOOK} .jp-Cell").nth(0)
        cell.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
        box = cell.locator(".widget-text input")

        def chart():
            return cell.evaluate(_BAR_CHART)

        def until(condition: str, what: str, extra=None) -> None:
            """Wait until `condition` holds: JS on the chart `c` (null while none) and `extra`."""
            try:
                page.wait_for_function(
                    f"([cell, extra]) => {{ const c = ({_BAR_CHART})(cell); return {condition}; }}",
                    arg=[cell.element_handle(), extra],
                    timeout=60_000,
                )
            except Exception:
                notes = cell.locator(".widget-html").all_inner_texts()
                pytest.fail(f"{what}: the explorer says {notes}; the chart is {chart()}")

        # A learner types a prompt and presses Enter: the chart shows its 20 likeliest characters.
        start = chart()
        box.fill(GENERATION_PROMPT)
        box.press("Enter")
        until("c && c.ticks.join('|') !== extra", "Enter", "|".join(start["ticks"]))
        expected = next_token_table(*char_gpt(), GENERATION_PROMPT).labels
        shown = chart()
        assert [html.unescape(t) for t in shown["ticks"]] == expected
        assert shown["drawn"] == {"raw": 20, "cut": 0, "renormalised": 20}, shown

        # top-k typed into the slider's box: 5 solid bars, 15 hatched, and the summary says so.
        slider = cell.locator(".widget-slider:has(label:text-is('top-k'))")
        slider.locator(".widget-readout").click()
        page.keyboard.press("Control+A")
        page.keyboard.type("5")
        page.keyboard.press("Enter")
        until("c && c.summary.includes('top-k 5 keeps 5 of 107')", "top-k 5")
        assert chart()["drawn"] == {"raw": 5, "cut": 15, "renormalised": 5}, chart()

        # "sample one" appends exactly one character to the prompt box.
        before = box.input_value()
        cell.locator("button:has-text('sample one')").click()
        page.wait_for_function(
            "([input, n]) => input.value.length === n",
            arg=[box.element_handle(), len(before) + 1],
            timeout=60_000,
        )
        assert box.input_value().startswith(before)
        cell.get_by_text("Sampled").wait_for(timeout=30_000)

        # An empty prompt: the error note, and no figure at all.
        box.fill("")
        box.press("Enter")
        cell.get_by_text("The prompt is empty").wait_for(timeout=60_000)
        page.wait_for_function(
            "(cell) => cell.querySelectorAll('.js-plotly-plot').length === 0",
            arg=cell.element_handle(),
            timeout=30_000,
        )

        # A 300-character prompt: the notice that it was cut, and the chart again.
        long = (GENERATION_PROMPT + "the object. ") * 10
        box.fill(long[:300])
        box.press("Enter")
        cell.get_by_text("The prompt has 300 characters").wait_for(timeout=60_000)
        until("c && c.ticks.length === 20", "a 300-character prompt")
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True, timeout=30_000)
    finally:
        page.close()
        _stop_kernels(jupyter_lab.url)
