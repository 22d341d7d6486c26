"""Student copies of the notebooks: solutions removed, outputs cleared (`make student`).

The exercise convention every chapter follows ("Your turn"):

1. a markdown cell stating the task;
2. a code cell the learner edits, holding a stub that still raises::

       def causal_mask(t):
           # YOUR CODE HERE: a (t, t) bool array, True where query i may attend to key j
           raise NotImplementedError

3. a code cell tagged `solution` (cell metadata
   `{"tags": ["solution"], "jupyter": {"source_hidden": true}}`, so JupyterLab shows it
   collapsed) that redefines the function correctly;
4. a check cell, `check_causal_mask(causal_mask)`, whose printed verdict is stored in the
   notebook ("✓ causal_mask: matches the reference on 4 test cases").

No later cell may use an exercise's function or its results: in a student copy the stub is all
there is, and "Run All" must still finish, each unfinished exercise's check saying
"… not done yet".

    python -m tfm_edu.teacher.student_copies notebooks student [--force]

writes `student/NN_x.ipynb` for every `notebooks/NN_x.ipynb`: each `solution` cell becomes a
markdown cell saying the solution was removed, every output and execution count is cleared, and
nothing else is copied. Running it again rewrites the copies identically, except that a copy the
learner has edited since it was written is kept (a fingerprint of its cells is stored in its
metadata); `--force` overwrites those too.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = ["SOLUTION_TAG", "strip_solutions", "write_student_copies", "main"]

SOLUTION_TAG = "solution"
REMOVED_TEXT = (
    "*Solution removed from the student copy.* Write your own in the cell above, then run the "
    "check below: it says ✓ when your function matches the reference."
)
_META_KEY = "tfm_edu"  # notebook metadata: {"student_copy_of": name, "fingerprint": sha256}


def strip_solutions(notebook: NotebookNode) -> NotebookNode:
    """A copy of `notebook` with solution cells replaced and all outputs cleared.

    Args:
        notebook: an nbformat v4 notebook (as read by `nbformat.read(path, as_version=4)`).

    Returns:
        A new notebook: each cell tagged `solution` becomes a markdown note (same cell id), code
        cells have no outputs and no execution count, and widget state is dropped.
    """
    student = nbformat.from_dict(notebook)  # a deep copy
    cells = []
    for cell in student.cells:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            removed = nbformat.v4.new_markdown_cell(REMOVED_TEXT)
            removed.metadata["tags"] = ["solution-removed"]
            if "id" in cell:
                removed["id"] = cell["id"]
            cells.append(removed)
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)  # timestamps left by nbclient
        cells.append(cell)
    student.cells = cells
    student.metadata.pop("widgets", None)  # the state of widgets whose outputs are gone
    return student


def write_student_copies(source: Path, destination: Path, force: bool = False) -> list[Path]:
    """Write a student copy of every `source/*.ipynb` into `destination/`.

    Args:
        source: folder of the full notebooks (with solutions), e.g. `notebooks`.
        destination: folder for the copies, created if missing, e.g. `student`.
        force: also overwrite copies the learner has edited.

    Returns:
        The copies written (edited copies kept are reported on stderr and not listed).

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
        if target.exists() and not force and _edited(target):
            print(
                f"kept {target}: edited since it was written (delete it, or pass --force)",
                file=sys.stderr,
            )
            continue
        student = strip_solutions(nbformat.read(path, as_version=4))
        student.metadata[_META_KEY] = {
            "student_copy_of": path.name,
            "fingerprint": _fingerprint(student),
        }
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
    args = parser.parse_args(argv)
    try:
        written = write_student_copies(args.source, args.destination, args.force)
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


def _edited(path: Path) -> bool:
    """Has the learner changed this copy since we wrote it? (Unreadable or foreign: yes.)"""
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # a corrupt file is not ours to overwrite silently
        return True
    recorded = notebook.metadata.get(_META_KEY, {}).get("fingerprint")
    return recorded != _fingerprint(notebook)


if __name__ == "__main__":
    raise SystemExit(main())
