"""`python -m tfm_edu.teacher.collect`: the hub's homes into an nbgrader course's submitted/.

(tests/test_nbgrader.py grades what it collects; here, which files go where, and the errors.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tfm_edu.teacher.collect import collect, main

CHAPTER = "01_attention_numpy.ipynb"


@pytest.fixture
def hub_and_course(tmp_path: Path) -> tuple[Path, Path]:
    homes, course = tmp_path / "homes", tmp_path / "course"
    (course / "source" / "01").mkdir(parents=True)
    (course / "source" / "01" / CHAPTER).write_text("{}")
    for name, text in (("ada", "ada's work"), ("bo", "bo's work")):
        (homes / name).mkdir(parents=True)
        (homes / name / CHAPTER).write_text(text)
    (homes / "cy").mkdir()  # has not opened chapter 01 yet
    return homes, course


def test_each_learners_chapter_lands_in_submitted_with_a_timestamp(hub_and_course):
    homes, course = hub_and_course
    copied = collect(homes, course, "01")
    assert copied == [course / "submitted" / n / "01" / CHAPTER for n in ("ada", "bo")]
    assert copied[0].read_text() == "ada's work" and copied[1].read_text() == "bo's work"
    assert (course / "submitted" / "ada" / "01" / "timestamp.txt").read_text().startswith("20")
    assert not (course / "submitted" / "cy").exists()
    (homes / "ada" / CHAPTER).write_text("ada's later work")
    collect(homes, course, "01")  # collecting again takes the latest work
    assert copied[0].read_text() == "ada's later work"


def test_errors_name_what_is_missing(hub_and_course, capsys):
    homes, course = hub_and_course
    with pytest.raises(ValueError, match="no learners' homes at .*nowhere"):
        collect(homes.parent / "nowhere", course, "01")
    with pytest.raises(ValueError, match="no assignment '1'.*make assignments"):
        collect(homes, course, "1")
    assert main(["--homes", str(homes), "--course", str(course), "02"]) == 2
    assert "no assignment '02'" in capsys.readouterr().err
    assert main(["--homes", str(homes), "--course", str(course), "01"]) == 0
    assert "nbgrader autograde 01" in capsys.readouterr().out
