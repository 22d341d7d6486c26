"""Hand the class hub's work to nbgrader: copy each learner's chapter into `submitted/`.

On the class hub (`make hub`) every learner works on their own copy of each chapter, in
`hub/homes/NAME/NN_topic.ipynb`. nbgrader grades what lies in its course directory
(`make assignments`), one folder per learner and assignment::

    assignments/submitted/NAME/NN/NN_topic.ipynb   (+ timestamp.txt: when it was collected)

    python -m tfm_edu.teacher.collect --homes hub/homes --course assignments 01

copies chapter 01 of every learner who has it, then prints the nbgrader commands that grade it
and write each learner's feedback. A learner's earlier submission is replaced: collecting again
after a deadline extension takes their latest work.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["collect", "main"]


def collect(homes: Path, course: Path, assignment: str) -> list[Path]:
    """Copy `homes/NAME/<assignment>_*.ipynb` to `course/submitted/NAME/<assignment>/`.

    Args:
        homes: the hub's learners' homes, one folder per learner (e.g. `hub/homes`).
        course: the nbgrader course directory (e.g. `assignments`), which must hold
            `source/<assignment>/` (written by `make assignments`).
        assignment: the two-digit chapter number, e.g. "01".

    Returns:
        The notebooks copied, one per learner who has the chapter, sorted by learner.

    Raises:
        ValueError: `homes` is missing, or the course has no such assignment.
    """
    homes, course = Path(homes), Path(course)
    if not homes.is_dir():
        raise ValueError(f"no learners' homes at {homes} (the hub writes them on first login)")
    sources = sorted((course / "source" / assignment).glob("*.ipynb"))
    if not sources:
        raise ValueError(
            f"{course} has no assignment {assignment!r}: run `make assignments` first, and name "
            "a chapter by its number, e.g. 01"
        )
    name = sources[0].name  # the chapter's file name, as every learner's copy has it
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
    copied = []
    for home in sorted(p for p in homes.iterdir() if p.is_dir()):
        notebook = home / name
        if not notebook.is_file():
            continue
        target = course / "submitted" / home.name / assignment
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook, target / name)
        (target / "timestamp.txt").write_text(stamp)
        copied.append(target / name)
    return copied


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m tfm_edu.teacher.collect --homes hub/homes --course assignments 01`."""
    parser = argparse.ArgumentParser(
        prog="python -m tfm_edu.teacher.collect",
        description="Copy every hub learner's chapter into an nbgrader course's submitted/.",
    )
    parser.add_argument("assignment", help="the chapter's number, e.g. 01")
    parser.add_argument("--homes", type=Path, default=Path("hub/homes"), help="(hub/homes)")
    parser.add_argument("--course", type=Path, default=Path("assignments"), help="(assignments)")
    args = parser.parse_args(argv)
    try:
        copied = collect(args.homes, args.course, args.assignment)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"collected {len(copied)} notebooks into {args.course / 'submitted'}")
    print(
        f"grade them: cd {args.course} && nbgrader autograde {args.assignment} "
        f"&& nbgrader generate_feedback {args.assignment}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
