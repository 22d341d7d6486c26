"""An nbgrader course for a class: every chapter an assignment, graded by its own checks.

nbgrader (https://nbgrader.readthedocs.io) grades a class's notebooks from a *course directory*:
the teacher's `source/` version of each assignment, the `release/` version nbgrader generates
from it for learners, then `submitted/`, `autograded/` and `feedback/`, and a gradebook
(`gradebook.db`). It recognises an exercise by cell metadata, which the chapters in `notebooks/`
carry (see `tfm_edu.teacher.student_copies` for the whole exercise convention):

- the stub the learner edits is an nbgrader *solution* cell (`"solution": true`, grade id
  `<name>_answer`): whatever the learner writes there is what gets graded;
- the check cell, `check_softmax(softmax)`, is an autograded *test* cell (`"grade": true`,
  `"locked": true`, grade id `check_<name>`, 1 point); nbgrader overwrites it with the
  teacher's version before grading, and scores it zero if it raises. Under nbgrader a check
  that does not pass raises `AssertionError` with the learner's hint (`graded`, in
  `tfm_edu.exercises.core`), so a ✗ or "not done yet" costs the point and the feedback says why.

nbgrader's own way to hide a solution is a region inside the solution cell, between
`### BEGIN SOLUTION` and `### END SOLUTION`, which `generate_assignment` replaces by a fixed
stub. So `source/` merges each exercise's stub and its hidden solution cell into one cell::

    def causal_mask(t):
        # YOUR CODE HERE
        raise NotImplementedError  ### BEGIN SOLUTION (learners get the cell up to here)
    def causal_mask(t):
        return np.tril(np.ones((t, t), dtype=bool))
    ### END SOLUTION

Run as it is, the solution redefines the stub; in `release/` the region becomes
`ClearSolutions.code_stub` (`raise NotImplementedError`, at the indentation of the line it
replaces), which gives back the learner's stub exactly. Every stub ends with that line, so the
release's code cells are the code cells of `make student`'s copies: "Run All" on a release
finishes, each check saying "not done yet".

    python -m tfm_edu.teacher.assignments notebooks assignments

writes `assignments/nbgrader_config.py` (course id "tfm-edu"), `source/NN/NN_topic.ipynb` for
every `notebooks/NN_topic.ipynb` (outputs cleared; chapter 00, without exercises, is an
assignment worth 0 points so a class's learners get it too), then runs
`nbgrader generate_assignment` to write `release/NN/`. Both are rewritten from `notebooks/` on
every run: edit the chapters, not `source/`. The gradebook and everything graded stay. Grade
with nbgrader from inside the course directory, e.g. `nbgrader autograde 01`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from tfm_edu.teacher.student_copies import clear_outputs, is_solution

__all__ = [
    "COURSE_ID",
    "CODE_STUB",
    "Exercise",
    "find_exercises",
    "source_notebook",
    "write_course",
    "run_nbgrader",
    "main",
]

COURSE_ID = "tfm-edu"
CODE_STUB = "raise NotImplementedError"  # every stub's last line; nbgrader's ClearSolutions stub
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_BEGIN_LINE = f"  {BEGIN} (learners get the cell up to here)"

NBGRADER_CONFIG = f'''\
"""nbgrader's settings for the tfm-edu course.

Written by `make assignments` (python -m tfm_edu.teacher.assignments), which rewrites it: put
settings of your own in ~/.jupyter/nbgrader_config.py, which nbgrader reads as well.
"""

c = get_config()  # noqa: F821 (nbgrader defines it)

c.CourseDirectory.course_id = "{COURSE_ID}"

# In source/, an exercise's solution region starts on its stub's last line, which is always
# `{CODE_STUB}`: the release puts that line back, so learners get the stub exactly.
c.ClearSolutions.code_stub = {{"python": "{CODE_STUB}"}}

# A few cells take 20 s on a laptop (nbgrader's default limit is 30 s per cell).
c.Execute.timeout = 300
'''


@dataclass(frozen=True)
class Exercise:
    """One "Your turn" as nbgrader sees it: positions of its cells in the chapter."""

    name: str  # what the learner defines, e.g. "softmax"; grade ids softmax_answer, check_softmax
    answer: int  # the stub the learner edits: an nbgrader solution cell
    solution: int  # the hidden cell tagged `solution` that solves it (the teacher's answer)
    check: int  # `check_softmax(softmax)`: an autograded, locked test cell
    points: float  # what the check cell is worth


def find_exercises(notebook: NotebookNode) -> list[Exercise]:
    """Every exercise of a chapter, its nbgrader metadata checked against the convention.

    Raises:
        ValueError: a solution cell without a stub before it or a check after it, a stub or
            check without the nbgrader metadata that says what it is, a stub that does not end
            with `raise NotImplementedError`, or an nbgrader cell outside any exercise.
    """
    cells = notebook.cells
    exercises = []
    for i, cell in enumerate(cells):
        if not is_solution(cell):
            continue
        where = f"the solution cell {i} ({_first_line(cell)!r})"
        if not 0 < i < len(cells) - 1:
            raise ValueError(f"{where} needs the learner's stub before it and a check after it")
        answer, check = cells[i - 1], cells[i + 1]
        meta = answer.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id", "")
        if not (
            answer.cell_type == "code"
            and meta.get("solution") is True
            and meta.get("grade") is False
            and grade_id.endswith("_answer")
        ):
            raise ValueError(
                f"{where}: the cell before it must be the learner's stub, an nbgrader solution "
                'cell ("solution": true, "grade": false, grade_id "<name>_answer")'
            )
        name = grade_id.removesuffix("_answer")
        if not re.search(rf"^(def|class) {re.escape(name)}\b", answer.source, re.MULTILINE):
            raise ValueError(f"{where}: the stub before it does not define `{name}`")
        if answer.source.split("\n")[-1].strip() != CODE_STUB:
            raise ValueError(f"{where}: the stub of `{name}` must end with `{CODE_STUB}`")
        meta = check.metadata.get("nbgrader", {})
        if not (
            check.cell_type == "code"
            and re.fullmatch(rf"check_\w+\({re.escape(name)}\)", check.source.strip())
            and meta.get("grade") is True
            and meta.get("locked") is True
            and meta.get("solution") is False
            and meta.get("grade_id") == f"check_{name}"
            and meta.get("points", 0) > 0
        ):
            raise ValueError(
                f"{where}: the cell after it must be `check_...({name})`, an nbgrader test cell "
                f'("grade": true, "locked": true, grade_id "check_{name}", points > 0)'
            )
        exercises.append(Exercise(name, i - 1, i, i + 1, meta["points"]))
    graded = {k for e in exercises for k in (e.answer, e.check)}
    for i, cell in enumerate(cells):
        if "nbgrader" in cell.metadata and i not in graded:
            raise ValueError(
                f"cell {i} ({_first_line(cell)!r}) has nbgrader metadata but is not part of an "
                "exercise (stub, solution, check)"
            )
    return exercises


def source_notebook(notebook: NotebookNode) -> NotebookNode:
    """nbgrader's source version of a chapter: outputs cleared, and each exercise's stub and
    solution merged into the stub's cell, the solution as nbgrader's solution region.

    Args:
        notebook: a chapter from `notebooks/`, following the exercise convention.

    Returns:
        A new notebook, one cell shorter per exercise.

    Raises:
        ValueError: the chapter breaks the convention (see `find_exercises`).
    """
    exercises = find_exercises(notebook)
    source = clear_outputs(notebook)
    for exercise in exercises:
        answer, solution = source.cells[exercise.answer], source.cells[exercise.solution]
        answer.source = "\n".join([answer.source + _BEGIN_LINE, solution.source.strip("\n"), END])
    dropped = {e.solution for e in exercises}
    source.cells = [cell for i, cell in enumerate(source.cells) if i not in dropped]
    return source


def write_course(notebooks: Path, course: Path) -> list[Path]:
    """Write an nbgrader course directory with every chapter of `notebooks/` as an assignment.

    Args:
        notebooks: the chapters, `NN_topic.ipynb` (the assignment id is `NN`).
        course: the course directory, created if missing; `nbgrader_config.py`, `source/` and
            `release/` are (re)written, the rest (gradebook, submissions, grades) is kept.

    Returns:
        The release notebooks, `course/release/NN/NN_topic.ipynb`.

    Raises:
        ValueError: no chapters, or a chapter that breaks the exercise convention.
        RuntimeError: nbgrader is missing or `nbgrader generate_assignment` failed.
    """
    notebooks, course = Path(notebooks), Path(course)
    chapters = sorted(p for p in notebooks.glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if not chapters:
        raise ValueError(f"no chapters (NN_topic.ipynb) in {notebooks}")
    if importlib.util.find_spec("nbgrader") is None:
        raise RuntimeError("nbgrader is not installed: pip install -e '.[teacher]'")
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    for path in chapters:
        folder = course / "source" / path.name[:2]
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.ipynb"):  # a renamed chapter leaves no stale copy behind
            if old.name != path.name:
                old.unlink()
        nbformat.write(source_notebook(nbformat.read(path, as_version=4)), folder / path.name)
    run = run_nbgrader(course, "generate_assignment", "*", "--force")
    if run.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{run.stderr[-4000:]}")
    return [course / "release" / path.name[:2] / path.name for path in chapters]


def run_nbgrader(
    course: Path, *args: str, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """`nbgrader ARGS` run by this Python in the course directory, its output captured.

    This Python's scripts folder goes first on PATH: nbgrader runs `alembic` by name when it
    creates the gradebook, and a virtual environment that is not activated has it there only.
    nbgrader starts in a session of its own, so a `timeout` (seconds) stops it together with
    every kernel it started, then raises `subprocess.TimeoutExpired`.
    """
    scripts = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=os.pathsep.join([scripts, os.environ.get("PATH", "")]))
    command = [sys.executable, "-m", "nbgrader", *args]
    with subprocess.Popen(
        command, cwd=course, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m tfm_edu.teacher.assignments NOTEBOOKS COURSE`."""
    parser = argparse.ArgumentParser(
        prog="python -m tfm_edu.teacher.assignments",
        description="Write an nbgrader course directory: every chapter, source and release.",
    )
    parser.add_argument("notebooks", type=Path, help="folder of the chapters, e.g. notebooks")
    parser.add_argument("course", type=Path, help="the course directory, e.g. assignments")
    args = parser.parse_args(argv)
    try:
        released = write_course(args.notebooks, args.course)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in released:
        exercises = find_exercises(nbformat.read(args.notebooks / path.name, as_version=4))
        count = f"{len(exercises)} exercise" + ("" if len(exercises) == 1 else "s")
        print(f"released {path} ({count}, {sum(e.points for e in exercises):g} points)")
    print(f"grade from {args.course}/, e.g. `cd {args.course} && nbgrader autograde 01`")
    return 0


def _first_line(cell: NotebookNode) -> str:
    return cell.source.strip().split("\n")[0][:60]


if __name__ == "__main__":
    raise SystemExit(main())
