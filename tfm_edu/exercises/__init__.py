"""Checks for the notebooks' "Your turn" exercises, one module per chapter group.

- `tfm_edu.exercises.core`: the harness (`check_function`, `Case`, `Mistake`, `CheckResult`), and
  `graded`, which every `check_*` below wears so that nbgrader can grade it.
- `tfm_edu.exercises.attention`: chapters 1-2 (softmax, attention, masks, a whole MHA module).
- `tfm_edu.exercises.positional`: chapter 3 (sinusoidal encoding, rotary embeddings).
- `tfm_edu.exercises.encoder`: chapter 4; `decoder`: chapter 5; `bert`: chapters 6-7;
  `training`: chapter 6 (a training loop); `params`: chapter 7 (parameter counts);
  `vit`: chapter 8; `gpt`: chapter 9; `distill`: chapter 10.

The reference of every check is the package's own function (or PyTorch's) wherever one exists.
Import checks from their chapter's module (`from tfm_edu.exercises.attention import
check_softmax`); this package imports only the harness, so chapter 1 never loads torch. The
teacher's tools that strip the solutions are `tfm_edu.teacher.student_copies` (copies for
learners) and `tfm_edu.teacher.assignments` (an nbgrader course).
"""

from tfm_edu.exercises.core import (
    Case,
    CheckResult,
    Mistake,
    check_against,
    check_function,
    graded,
)

__all__ = ["Case", "CheckResult", "Mistake", "check_against", "check_function", "graded"]
