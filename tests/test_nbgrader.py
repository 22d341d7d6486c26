"""nbgrader grades the course: metadata on every exercise, a release without solutions, and the
points that a solved, an untouched and a half-done copy of two chapters get from the autograder.

The fast tests read the chapters' metadata and the merging of stub and solution. The classroom
tests build a whole course directory (`tfm_edu.teacher.assignments`) in a temporary folder, then
hand nbgrader three learners' copies of chapters 01 and 03 (the quickest to run with more than
one exercise) and autograde them in one `nbgrader autograde` call. `pytest -s` prints the points.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest

from tfm_edu.teacher.assignments import (
    CODE_STUB,
    COURSE_ID,
    NBGRADER_CONFIG,
    find_exercises,
    run_nbgrader,
    source_notebook,
    write_course,
)
from tfm_edu.teacher.collect import collect
from tfm_edu.teacher.student_copies import is_solution, strip_solutions

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
GRADED = ["01_attention_numpy.ipynb", "03_positional_encoding.ipynb"]
COPIES = ["solved", "unsolved", "partial"]  # the student ids in the gradebook


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


# ------------------------------------------------------------------ the metadata (fast)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_carries_nbgrader_metadata(path: Path):
    """Each stub is an nbgrader solution cell, each check a locked test cell with points, and
    nbgrader's own validator accepts the chapter (schema, unique grade ids)."""
    from nbgrader.nbgraderformat import MetadataValidator

    notebook = read(path)
    exercises = find_exercises(notebook)  # raises on any broken exercise
    solutions = [i for i, cell in enumerate(notebook.cells) if is_solution(cell)]
    assert [e.solution for e in exercises] == solutions
    MetadataValidator().validate_nb(notebook)
    grade_ids = [
        c.metadata["nbgrader"]["grade_id"] for c in notebook.cells if "nbgrader" in c.metadata
    ]
    assert len(grade_ids) == 2 * len(exercises) == len(set(grade_ids))
    assert all(e.points == 1 for e in exercises)
    if path.name != "00_start_here.ipynb":
        assert exercises, f"{path.name} has no exercise"


def tiny_chapter(*, metadata: bool = True) -> nbformat.NotebookNode:
    """One exercise, as a chapter writes it (stub, hidden solution, check)."""
    v4 = nbformat.v4
    stub = v4.new_code_cell("def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError")
    solution = v4.new_code_cell("def double(x):\n    return 2 * x")
    solution.metadata.update({"tags": ["solution"], "jupyter": {"source_hidden": True}})
    check = v4.new_code_cell("check_double(double)", execution_count=3)
    check.outputs = [v4.new_output("execute_result", {"text/plain": "✓"}, execution_count=3)]
    if metadata:
        common = {"schema_version": 3, "task": False}
        stub.metadata["nbgrader"] = common | {
            "grade": False, "solution": True, "locked": False, "grade_id": "double_answer"
        }  # fmt: skip
        check.metadata["nbgrader"] = common | {
            "grade": True, "solution": False, "locked": True, "grade_id": "check_double",
            "points": 1,
        }  # fmt: skip
    cells = [v4.new_markdown_cell("## Your turn: `double(x)`"), stub, solution, check]
    return v4.new_notebook(cells=cells)


def test_source_merges_stub_and_solution_and_nbgrader_gives_the_stub_back():
    from nbgrader.preprocessors import ClearSolutions
    from traitlets.config import Config

    chapter = tiny_chapter()
    source = source_notebook(chapter)
    assert len(source.cells) == 3 and source.cells[2].outputs == []
    merged = source.cells[1].source
    assert merged.startswith(chapter.cells[1].source + "  ### BEGIN SOLUTION")
    assert merged.endswith("def double(x):\n    return 2 * x\n### END SOLUTION")
    namespace: dict = {}
    exec(merged, namespace)  # the source runs, and its solution wins
    assert namespace["double"](3) == 6
    # nbgrader's own step, configured as the course's nbgrader_config.py configures it
    config = Config()
    exec(NBGRADER_CONFIG, {"get_config": lambda: config})
    assert config.ClearSolutions.code_stub == {"python": CODE_STUB}
    assert config.CourseDirectory.course_id == COURSE_ID
    released, _ = ClearSolutions(config=config).preprocess(source, {})
    assert released.cells[1].source == chapter.cells[1].source


@pytest.mark.parametrize(
    ("slip", "message"),
    [
        (lambda nb: nb.cells[1].metadata.pop("nbgrader"), "must be the learner's stub"),
        (lambda nb: nb.cells[3].metadata.pop("nbgrader"), "must be `check_...(double)`"),
        (lambda nb: nb.cells[3].metadata["nbgrader"].update(points=0), "points > 0"),
        (lambda nb: setattr(nb.cells[1], "source", "def double(x):\n    pass"), "must end with"),
        (lambda nb: setattr(nb.cells[1], "source", "def twice(x):\n    " + CODE_STUB), "`double`"),
        (lambda nb: nb.cells[0].metadata.update(nbgrader={}), "not part of an exercise"),
        (lambda nb: nb.cells.pop(3), "a check after it"),
    ],
)
def test_a_chapter_that_breaks_the_convention_is_refused(slip, message):
    chapter = tiny_chapter()
    slip(chapter)
    with pytest.raises(ValueError, match=re.escape(message)):
        source_notebook(chapter)


# ------------------------------------------------------------------ a class, graded (classroom)


def learner_copies(course: Path, chapter: str) -> dict[str, tuple[nbformat.NotebookNode, str]]:
    """The three copies handed in for one chapter, and the exercise the partial one solves."""
    teacher = read(NOTEBOOKS / chapter)
    release = read(course / "release" / chapter[:2] / chapter)
    solved_one = find_exercises(teacher)[-1]
    partial = nbformat.from_dict(release)
    for cell in partial.cells:  # the learner pastes one solution into its stub's cell
        if cell.metadata.get("nbgrader", {}).get("grade_id") == f"{solved_one.name}_answer":
            cell.source = teacher.cells[solved_one.solution].source
    source = read(course / "source" / chapter[:2] / chapter)
    return {
        "solved": (source, ""),
        "unsolved": (release, ""),
        "partial": (partial, solved_one.name),
    }


def processes_in(folder: Path) -> list[str]:
    """Processes whose working directory is inside `folder` (a kernel nbgrader left running)."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd = process.info["cwd"]
        if cwd and Path(cwd).is_relative_to(folder):
            found.append(f"{process.info['pid']}: {' '.join(process.info['cmdline'] or [])}")
    return found


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """A course directory, every chapter released, three copies of two chapters autograded."""
    from nbgrader.api import Gradebook

    root = tmp_path_factory.mktemp("course")
    start = time.perf_counter()
    released = write_course(NOTEBOOKS, root)
    generate_s = time.perf_counter() - start
    partial_solves = {}
    homes = tmp_path_factory.mktemp("homes")  # as the class hub keeps them: homes/NAME/NN_x
    for chapter in GRADED:
        for student, (notebook, solved) in learner_copies(root, chapter).items():
            (homes / student).mkdir(exist_ok=True)
            nbformat.write(notebook, homes / student / chapter)
            if solved:
                partial_solves[chapter[:2]] = solved
        assert len(collect(homes, root, chapter[:2])) == len(COPIES)  # into submitted/
    start = time.perf_counter()
    run = run_nbgrader(root, "autograde", "*", timeout=540)
    autograde_s = time.perf_counter() - start
    assert run.returncode == 0, run.stderr[-4000:]
    scores = {}  # (student, assignment) -> {grade id: (score, max score)}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        for student in COPIES:
            for chapter in GRADED:
                submission = gradebook.find_submission(chapter[:2], student)
                cells = {
                    g.name: (g.score, g.max_score) for n in submission.notebooks for g in n.grades
                }
                scores[student, chapter[:2]] = cells
    return {
        "root": root,
        "released": released,
        "scores": scores,
        "partial_solves": partial_solves,
        "log": run.stderr,
        "seconds": (generate_s, autograde_s),
    }


def total(cells: dict) -> tuple[float, float]:
    return sum(s for s, _ in cells.values()), sum(m for _, m in cells.values())


@pytest.mark.classroom
def test_points_table(course: dict):
    """The table a teacher would read in formgrader; printed for `pytest -s`."""
    generate_s, autograde_s = course["seconds"]
    assignments = [c[:2] for c in GRADED]
    lines = [f"{'copy':10}" + "".join(f"{a:>8}" for a in assignments)]
    for student in COPIES:
        row = "".join(
            "{:>8}".format("{:g}/{:g}".format(*total(course["scores"][student, a])))
            for a in assignments
        )
        lines.append(f"{student:10}{row}")
    solves = ", ".join(f"{a}: {name}" for a, name in course["partial_solves"].items())
    lines.append(f"(partial solves one exercise per chapter: {solves})")
    lines.append(
        f"generate_assignment {generate_s:.0f} s; autograde of 6 copies {autograde_s:.0f} s"
    )
    print("\nnbgrader points\n" + "\n".join(lines))
    assert len(lines) == len(COPIES) + 3


@pytest.mark.classroom
def test_the_release_has_no_solution_and_is_make_students_copy(course: dict):
    root = course["root"]
    assert [p.relative_to(root / "release").parts[0] for p in course["released"]] == [
        c.name[:2] for c in CHAPTERS
    ]
    for path in CHAPTERS:
        teacher = read(path)
        release = read(root / "release" / path.name[:2] / path.name)
        assert code_cells(release) == code_cells(strip_solutions(teacher)), path.name
        text = "\n".join(cell.source for cell in release.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        released_lines = {line.strip() for line in text.splitlines()}
        elsewhere = {
            line.strip()
            for cell in teacher.cells
            if not is_solution(cell)
            for line in cell.source.splitlines()
        }
        for e in find_exercises(teacher):
            for line in teacher.cells[e.solution].source.splitlines():
                if line.strip() and line.strip() not in elsewhere:
                    assert line.strip() not in released_lines, (path.name, e.name, line)
        assert all(not c.get("outputs") for c in release.cells)


@pytest.mark.classroom
def test_the_solved_source_gets_full_points(course: dict):
    for chapter in GRADED:
        cells = course["scores"]["solved", chapter[:2]]
        assert len(cells) == len(find_exercises(read(NOTEBOOKS / chapter)))
        assert all(score == most > 0 for score, most in cells.values()), (chapter, cells)


@pytest.mark.classroom
def test_the_untouched_release_gets_zero_and_runs_to_the_end(course: dict):
    """Every check fails with the learner's own "not done yet" text; no other cell fails."""
    from tfm_edu.exercises import core

    root = course["root"]
    for chapter in GRADED:
        cells = course["scores"]["unsolved", chapter[:2]]
        assert cells and all(score == 0 for score, _ in cells.values()), (chapter, cells)
        graded = read(root / "autograded" / "unsolved" / chapter[:2] / chapter)
        for cell in graded.cells:
            if cell.cell_type != "code":
                continue
            assert cell.execution_count is not None, (chapter, cell.source)  # it ran
            errors = [o for o in cell.outputs if o.output_type == "error"]
            if cell.metadata.get("nbgrader", {}).get("grade"):
                assert [e.ename for e in errors] == ["AssertionError"], (chapter, cell.source)
                assert errors[0].evalue.startswith("… not done yet: `"), errors[0].evalue
            else:
                assert not errors, (chapter, cell.source, errors)
    # the same text a learner reads under the check cell
    namespace: dict = {}
    exec("def softmax(x, axis=-1):\n    raise NotImplementedError", namespace)
    from tfm_edu.exercises.attention import check_softmax

    learner_text = check_softmax(namespace["softmax"]).message
    graded = read(root / "autograded" / "unsolved" / "01" / GRADED[0])
    check = next(c for c in graded.cells if c.source == "check_softmax(softmax)")
    assert check.outputs[-1].evalue == learner_text
    assert core.GRADING_VARIABLE not in os.environ  # the grading mode stayed in nbgrader


@pytest.mark.classroom
def test_a_partly_solved_copy_gets_exactly_that_exercises_points(course: dict):
    for chapter in GRADED:
        solved = course["partial_solves"][chapter[:2]]
        cells = course["scores"]["partial", chapter[:2]]
        assert cells[f"check_{solved}"][0] == cells[f"check_{solved}"][1] == 1
        others = [score for name, (score, _) in cells.items() if name != f"check_{solved}"]
        assert others and all(score == 0 for score in others), (chapter, cells)


@pytest.mark.classroom
def test_passing_checks_print_and_nbgrader_grades_without_warnings(course: dict):
    """A passing check prints ✓ (nbgrader would read a returned value as a partial score)."""
    graded = read(course["root"] / "autograded" / "solved" / "01" / GRADED[0])
    check = next(c for c in graded.cells if c.source == "check_softmax(softmax)")
    assert [o.output_type for o in check.outputs] == ["stream"]
    assert check.outputs[0].text.startswith("✓ softmax: matches the reference")
    assert "cannot be converted to" not in course["log"]  # nbgrader's partial-credit warning


@pytest.mark.classroom
def test_nbgrader_leaves_no_process_running(course: dict):
    assert processes_in(course["root"]) == []
