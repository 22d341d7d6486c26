"""Learner and student copies of the notebooks: solutions never run, outputs cleared.

`notebooks/` is the teacher's edition: every exercise solved, every output stored. Learners work
in copies of it, so that their own attempt is what each check tests:

- `make lab` writes `learner/` copies for self-study: each solution becomes a collapsed markdown
  cell that shows the solution's code but cannot run, so it never replaces the learner's function;
- `make student` writes `student/` copies for a class: the solutions are removed;
- `make assignments` writes an nbgrader course whose releases have the same code cells
  (`tfm_edu.teacher.assignments`).

The exercise convention every chapter follows ("Your turn"):

1. a markdown cell stating the task;
2. a code cell the learner edits, holding a stub whose last line raises::

       def causal_mask(t):
           # YOUR CODE HERE: a (t, t) bool array, True where query i may attend to key j
           raise NotImplementedError

   with nbgrader's metadata for an answer cell: `{"nbgrader": {"solution": true, "grade":
   false, "locked": false, "grade_id": "causal_mask_answer", "schema_version": 3, "task":
   false}}`;
3. a code cell tagged `solution` (cell metadata
   `{"tags": ["solution"], "jupyter": {"source_hidden": true}}`, so JupyterLab shows it
   collapsed) that redefines the function correctly;
4. a check cell, `check_causal_mask(causal_mask)`, whose printed verdict is stored in the
   notebook ("✓ causal_mask: matches the reference on 4 test cases"), with nbgrader's metadata
   for an autograded test: `{"nbgrader": {"grade": true, "solution": false, "locked": true,
   "points": 1, "grade_id": "check_causal_mask", "schema_version": 3, "task": false}}`.

No later cell may use an exercise's function or its results: in a copy the stub is all there
is, and "Run All" must still finish, each unfinished exercise's check saying "… not done yet".

    python -m tfm_edu.teacher.student_copies notebooks student [--show-solutions] [--force]

writes `student/NN_x.ipynb` for every `notebooks/NN_x.ipynb`: each `solution` cell becomes a
markdown cell (saying the solution was removed, or showing it as code that does not run), every
output and execution count is cleared, and nothing else is copied. Running it again updates the
copies whose source notebook changed and leaves the others as they are; a copy the learner has
edited since it was written is always kept (a fingerprint of its cells is stored in its metadata),
unless `--force`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = [
    "SOLUTION_TAG",
    "strip_solutions",
    "clear_outputs",
    "is_solution",
    "write_student_copies",
    "main",
]

SOLUTION_TAG = "solution"
REMOVED_TEXT = (
    "*Solution removed from the student copy.* Write your own in the cell above, then run the "
    "check below: it says ✓ when your function matches the reference."
)
SHOWN_TEXT = (
    "**Solution** (read it after your own attempt). It is shown here as text and never runs, "
    "so the check below always tests *your* code."
)
_META_KEY = "tfm_edu"  # notebook metadata: {"student_copy_of": name, "fingerprint": sha256}


def strip_solutions(notebook: NotebookNode, *, show_solutions: bool = False) -> NotebookNode:
    """A copy of `notebook` whose solution cells cannot run, with all outputs cleared.

    Args:
        notebook: an nbformat v4 notebook (as read by `nbformat.read(path, as_version=4)`).
        show_solutions: keep each solution's code, as a collapsed markdown cell (a learner's
            copy); default: replace it by a note saying it was removed (a class's copy).

    Returns:
        A new notebook: each cell tagged `solution` becomes a markdown cell (same cell id,
        tagged `solution-removed` or `solution-shown`), code cells have no outputs and no
        execution count, and widget state is dropped.
    """
    student = clear_outputs(notebook)
    student.cells = [
        _solution_note(cell, show_solutions) if is_solution(cell) else cell
        for cell in student.cells
    ]
    return student


def clear_outputs(notebook: NotebookNode) -> NotebookNode:
    """A copy of `notebook` as if never run: no outputs, execution counts, run timestamps
    (nbclient's `execution` cell metadata) or widget state."""
    fresh = nbformat.from_dict(notebook)  # a deep copy
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    fresh.metadata.pop("widgets", None)  # the state of widgets whose outputs are gone
    return fresh


def is_solution(cell: NotebookNode) -> bool:
    """Is `cell` an exercise's solution (tagged `solution`)?"""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def write_student_copies(
    source: Path, destination: Path, force: bool = False, *, show_solutions: bool = False
) -> list[Path]:
    """Write a copy of every `source/*.ipynb` into `destination/`, solutions made inert.

    Args:
        source: folder of the full notebooks (with solutions), e.g. `notebooks`.
        destination: folder for the copies, created if missing, e.g. `student`.
        force: also overwrite copies the learner has edited.
        show_solutions: show each solution as text that does not run (see `strip_solutions`).

    Returns:
        The copies written. Copies already up to date are left untouched (the learner's outputs
        stay) and not listed; edited copies kept are reported on stderr and not listed.

    Raises:
        ValueError: `source` is missing, holds no notebooks, or is `destination` itself.
    """
    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        raise ValueError(f"source folder {source} does not exist")
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"no notebooks (*.ipynb) in {source}: nothing to copy")
    if destination.resolve() == source.resolve():
        raise ValueError(f"destination {destination} is the source folder: pick another one")
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = destination / path.name
        student = strip_solutions(nbformat.read(path, as_version=4), show_solutions=show_solutions)
        fingerprint = _fingerprint(student)
        recorded = _recorded_fingerprint(target) if target.exists() else None
        if target.exists() and not force:
            if recorded == fingerprint:
                continue  # up to date: keep the learner's outputs
            if recorded != _fingerprint_of(target):
                print(
                    f"kept {target}: edited since it was written (delete it, or pass --force)",
                    file=sys.stderr,
                )
                continue
        student.metadata[_META_KEY] = {"student_copy_of": path.name, "fingerprint": fingerprint}
        nbformat.write(student, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m tfm_edu.teacher.student_copies SOURCE DESTINATION [--force]`."""
    parser = argparse.ArgumentParser(
        prog="python -m tfm_edu.teacher.student_copies",
        description="Write copies of the notebooks without solutions and outputs.",
    )
    parser.add_argument("source", type=Path, help="folder of full notebooks, e.g. notebooks")
    parser.add_argument("destination", type=Path, help="folder for the copies, e.g. student")
    parser.add_argument("--force", action="store_true", help="overwrite edited copies too")
    parser.add_argument(
        "--show-solutions",
        action="store_true",
        help="show each solution as text that never runs (self-study) instead of removing it",
    )
    args = parser.parse_args(argv)
    try:
        written = write_student_copies(
            args.source, args.destination, args.force, show_solutions=args.show_solutions
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def _fingerprint(notebook: NotebookNode) -> str:
    """sha256 of the cells' types and sources: what a learner's edit changes."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        digest.update(f"{cell.cell_type}\0{source}\0".encode())
    return digest.hexdigest()


def _solution_note(cell: NotebookNode, show: bool) -> NotebookNode:
    """The markdown cell standing for a solution: its code as text (collapsed), or a note."""
    if show:
        code = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        note = nbformat.v4.new_markdown_cell(f"{SHOWN_TEXT}\n\n```python\n{code.rstrip()}\n```")
        note.metadata.update({"tags": ["solution-shown"], "jupyter": {"source_hidden": True}})
    else:
        note = nbformat.v4.new_markdown_cell(REMOVED_TEXT)
        note.metadata["tags"] = ["solution-removed"]
    if "id" in cell:
        note["id"] = cell["id"]
    return note


def _recorded_fingerprint(path: Path) -> str | None:
    """The fingerprint stored when we wrote this copy (None: unreadable or not ours)."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:
        return None
    return notebook.metadata.get(_META_KEY, {}).get("fingerprint")


def _fingerprint_of(path: Path) -> str | None:
    """The fingerprint of the copy as it is now ("unreadable": never ours to overwrite)."""
    try:
        return _fingerprint(nbformat.read(path, as_version=4))
    except Exception:  # a corrupt file is not ours to overwrite silently
        return "unreadable"


if __name__ == "__main__":
    raise SystemExit(main())
