"""Chapter 00's bilingual glossary: every term in English and Chinese, each where it is taught.

The glossary is a markdown table (English | 中文 | what it is | chapter). A row must give a
Chinese name, and its English term must really appear in the prose of the chapter it points to,
so the table cannot drift from the chapters as they change.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CJK = re.compile(r"[\u4e00-\u9fff]")
# The terms the course's Chinese-speaking learners asked for first, with their usual names.
REQUIRED = {
    "attention": "注意力",
    "self-attention": "自注意力",
    "multi-head attention": "多头注意力",
    "positional encoding": "位置编码",
    "encoder": "编码器",
    "decoder": "解码器",
    "teacher forcing": "教师强制",
    "distillation": "知识蒸馏",
}


def glossary() -> list[tuple[str, str, str, str]]:
    notebook = nbformat.read(NOTEBOOKS / "00_start_here.ipynb", as_version=4)
    (cell,) = [c for c in notebook.cells if c.cell_type == "markdown" and "术语表" in c.source]
    rows = [line.strip().strip("|").split(" | ") for line in cell.source.splitlines()]
    rows = [[part.strip() for part in row] for row in rows if len(row) == 4]
    return [tuple(row) for row in rows[2:]]  # past the header and the |---| line


def prose(chapter: str) -> str:
    """A chapter's markdown, lower-case, hyphens read as spaces ("multi-head" = "multi head")."""
    (path,) = NOTEBOOKS.glob(f"{chapter}_*.ipynb")
    cells = nbformat.read(path, as_version=4).cells
    text = " ".join(c.source for c in cells if c.cell_type == "markdown")
    return text.lower().replace("-", " ")


def test_the_glossary_names_the_course_s_core_terms_in_chinese():
    table = {english: chinese for english, chinese, _, _ in glossary()}
    assert len(table) >= 40
    for english, chinese in REQUIRED.items():
        assert chinese in table.get(english, ""), f"{english}: expected {chinese}"


def test_every_term_has_a_chinese_name_and_appears_in_its_chapter():
    for english, chinese, meaning, chapter in glossary():
        assert CJK.search(chinese), f"{english}: no Chinese name ({chinese!r})"
        assert meaning, f"{english}: says nothing about what it is"
        text = prose(chapter)
        for term in english.split(" / "):
            assert term.lower().replace("-", " ") in text, f"{term!r} is not in chapter {chapter}"
