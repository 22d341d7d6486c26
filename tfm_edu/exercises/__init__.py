"""Checks for the notebooks' "Your turn" exercises, and the tool that strips their solutions.

- `tfm_edu.exercises.core`: the harness (`check_function`, `Case`, `Mistake`, `CheckResult`).
- `tfm_edu.exercises.attention`: chapters 1-2 (softmax, attention, masks, heads).
- `tfm_edu.exercises.positional`: chapter 3 (sinusoidal encoding, rotary embeddings).
- `tfm_edu.exercises.student`: `python -m tfm_edu.exercises.student notebooks student` writes
  copies of the notebooks without their solutions (`make student`); its docstring describes the
  exercise convention.

Import checks from their chapter's module (`from tfm_edu.exercises.attention import
check_softmax`); this package imports only the harness, so chapter 1 never loads torch.
"""

from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function

__all__ = ["Case", "CheckResult", "Mistake", "check_function"]
