"""`make student`: solutions stripped, outputs cleared, and "Run All" on a copy still finishes."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tfm_edu.teacher.student_copies import (
    REMOVED_TEXT,
    main,
    strip_solutions,
    write_student_copies,
)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOLUTION = "def causal_mask(t):\n    return np.tril(np.ones((t, t), dtype=bool))"


def exercise_notebook() -> nbformat.NotebookNode:
    """A tiny chapter with one exercise, following the convention, with stored outputs."""
    v4 = nbformat.v4
    solution = v4.new_code_cell(SOLUTION)
    solution.metadata.update({"tags": ["solution"], "jupyter": {"source_hidden": True}})
    check = v4.new_code_cell("check_causal_mask(causal_mask)", execution_count=4)
    check.outputs = [
        v4.new_output("execute_result", {"text/plain": "✓ causal_mask: ..."}, execution_count=4)
    ]
    cells = [
        v4.new_markdown_cell("# A tiny chapter\n\n## Your turn: write `causal_mask(t)`"),
        v4.new_code_cell(
            "import numpy as np\nfrom tfm_edu.exercises.attention import check_causal_mask",
            execution_count=1,
        ),
        v4.new_code_cell(
            "def causal_mask(t):\n    # YOUR CODE HERE\n    raise NotImplementedError",
            execution_count=2,
        ),
        solution,
        check,
        v4.new_code_cell("print(np.arange(3).sum())", execution_count=5),
    ]
    cells[-1].outputs = [v4.new_output("stream", name="stdout", text="3\n")]
    notebook = v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "tfm-edu", "display_name": "Python (tfm-edu)"}
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    return notebook


@pytest.fixture
def course(tmp_path: Path) -> Path:
    source = tmp_path / "notebooks"
    source.mkdir()
    nbformat.write(exercise_notebook(), source / "01_tiny.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), source / "00_empty.ipynb")
    (source / "notes.txt").write_text("not a notebook")
    return source


def code_sources(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def test_strip_solutions_removes_solutions_and_outputs():
    original = exercise_notebook()
    student = strip_solutions(original)
    assert "np.tril" not in code_sources(student)
    removed = [c for c in student.cells if "solution-removed" in c.metadata.get("tags", [])]
    assert len(removed) == 1 and removed[0].cell_type == "markdown"
    assert removed[0].source == REMOVED_TEXT and removed[0].id == original.cells[3].id
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in student.metadata
    assert student.metadata.kernelspec.name == "tfm-edu"
    assert original.cells[3].source == SOLUTION and original.cells[4].outputs  # input untouched
    nbformat.validate(student)


def test_write_copies_only_notebooks_and_is_idempotent(course: Path, tmp_path: Path):
    student = tmp_path / "student"
    written = write_student_copies(course, student)
    assert [p.name for p in written] == ["00_empty.ipynb", "01_tiny.ipynb"]
    assert sorted(p.name for p in student.iterdir()) == ["00_empty.ipynb", "01_tiny.ipynb"]
    first = (student / "01_tiny.ipynb").read_bytes()
    assert b"np.tril" not in first
    assert write_student_copies(course, student) == []  # up to date: left as they are
    assert (student / "01_tiny.ipynb").read_bytes() == first


def test_edited_copies_are_kept_unless_forced(course: Path, tmp_path: Path, capsys):
    student = tmp_path / "student"
    write_student_copies(course, student)
    copy = nbformat.read(student / "01_tiny.ipynb", as_version=4)
    copy.cells[2].source = "def causal_mask(t):\n    return 'my work'"
    nbformat.write(copy, student / "01_tiny.ipynb")
    assert write_student_copies(course, student) == []  # nothing new to bring: kept, silently
    chapter = nbformat.read(course / "01_tiny.ipynb", as_version=4)
    chapter.cells[0].source += " (revised)"  # the teacher's edition changes
    nbformat.write(chapter, course / "01_tiny.ipynb")
    assert write_student_copies(course, student) == []  # the edited copy is still kept ...
    assert "kept" in capsys.readouterr().err  # ... and the learner is told why it was not updated
    assert "my work" in (student / "01_tiny.ipynb").read_text()
    write_student_copies(course, student, force=True)
    assert "my work" not in (student / "01_tiny.ipynb").read_text()


def test_running_cells_is_not_an_edit_and_outputs_stay_until_the_course_changes(
    course: Path, tmp_path: Path
):
    student = tmp_path / "student"
    write_student_copies(course, student)
    copy = nbformat.read(student / "01_tiny.ipynb", as_version=4)
    copy.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="3\n")]
    copy.cells[-1].execution_count = 7
    nbformat.write(copy, student / "01_tiny.ipynb")
    assert write_student_copies(course, student) == []  # the learner's outputs stay
    assert nbformat.read(student / "01_tiny.ipynb", as_version=4).cells[-1].execution_count == 7
    chapter = nbformat.read(course / "01_tiny.ipynb", as_version=4)
    chapter.cells[-1].source = "print(np.arange(4).sum())"  # the teacher's edition changes
    nbformat.write(chapter, course / "01_tiny.ipynb")
    assert write_student_copies(course, student) == [student / "01_tiny.ipynb"]
    assert "arange(4)" in (student / "01_tiny.ipynb").read_text()


def test_learner_copies_show_the_solution_as_text_that_never_runs(course: Path, tmp_path: Path):
    original = exercise_notebook()
    learner = strip_solutions(original, show_solutions=True)
    assert "np.tril" not in code_sources(learner)
    shown = [c for c in learner.cells if "solution-shown" in c.metadata.get("tags", [])]
    assert len(shown) == 1 and shown[0].cell_type == "markdown"
    assert f"```python\n{SOLUTION}\n```" in shown[0].source
    assert shown[0].metadata.jupyter.source_hidden and shown[0].id == original.cells[3].id
    nbformat.validate(learner)
    assert main([str(course), str(tmp_path / "learner"), "--show-solutions"]) == 0
    notebook = run_all(nbformat.read(tmp_path / "learner" / "01_tiny.ipynb", 4), tmp_path)
    check = next(c for c in notebook.cells if "check_causal_mask(" in c.source)
    assert "… not done yet: `causal_mask` still raises NotImplementedError" in outputs_text(check)


def test_clear_errors(tmp_path: Path, course: Path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no notebooks"):
        write_student_copies(tmp_path / "empty", tmp_path / "student")
    with pytest.raises(ValueError, match="does not exist"):
        write_student_copies(tmp_path / "missing", tmp_path / "student")
    with pytest.raises(ValueError, match="is the source folder"):
        write_student_copies(course, course)
    assert main([str(tmp_path / "empty"), str(tmp_path / "student")]) == 2
    assert "error: no notebooks (*.ipynb) in" in capsys.readouterr().err


def test_cli_writes_the_copies(course: Path, tmp_path: Path, capsys):
    assert main([str(course), str(tmp_path / "student")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "student" / "01_tiny.ipynb").exists()


def run_all(notebook, cwd: Path):
    """Execute like "Run All" in the current environment; raises on the first cell error."""
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


def outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_student_copy_runs_and_says_not_done(course: Path, tmp_path: Path):
    write_student_copies(course, tmp_path / "student")
    notebook = run_all(nbformat.read(tmp_path / "student" / "01_tiny.ipynb", 4), tmp_path)
    check = next(c for c in notebook.cells if "check_causal_mask(" in c.source)
    assert "… not done yet: `causal_mask` still raises NotImplementedError" in outputs_text(check)
    assert outputs_text(notebook.cells[-1]) == "3\n"


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_course_notebook_runs_as_a_student_copy(path: Path):
    """The promise of `make student`: Run All finishes, each exercise saying it is not done."""
    student = strip_solutions(nbformat.read(path, as_version=4))
    run_all(student, NOTEBOOKS)  # student/ sits beside notebooks/: same relative paths
    for i, cell in enumerate(student.cells):
        if "solution-removed" not in cell.metadata.get("tags", []):
            continue
        later = student.cells[i + 1 :]
        checks = [c for c in later if c.cell_type == "code" and "check_" in c.source]
        if checks:
            assert "not done yet" in outputs_text(checks[0]), (path.name, checks[0].source)


def wrong_attempt(source: str) -> str:
    """A learner's first, wrong try at a stub: every `raise NotImplementedError` becomes
    `return None`, keeping its indentation."""
    return re.sub(r"^(\s*)raise NotImplementedError\b.*$", r"\1return None", source, flags=re.M)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_in_a_learner_copy_a_wrong_attempt_never_gets_a_tick(path: Path):
    """`make lab`'s copies: the solution is text, so Shift+Enter through a wrong attempt never
    runs it, and the check answers ✗ for what the learner wrote."""
    learner = strip_solutions(nbformat.read(path, as_version=4), show_solutions=True)
    exercises = [
        i
        for i, cell in enumerate(learner.cells)
        if "solution-shown" in cell.metadata.get("tags", [])
    ]
    for i in exercises:
        stub = learner.cells[i - 1]
        assert stub.cell_type == "code" and "NotImplementedError" in stub.source, (path.name, i)
        stub.source = wrong_attempt(stub.source)
    run_all(learner, NOTEBOOKS)
    for i in exercises:
        later = learner.cells[i + 1 :]
        check = next(c for c in later if c.cell_type == "code" and "check_" in c.source)
        verdict = outputs_text(check)
        assert verdict.lstrip().startswith("✗"), (path.name, check.source, verdict)
