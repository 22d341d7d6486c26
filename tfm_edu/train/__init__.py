"""Training: one loop for every model of the course (`fit`), its learning-rate schedule, and the
`History` it records. `python -m tfm_edu.train <recipe>` (in `__main__.py`) runs the recipes of
`tfm_edu.recipes`, which write the checkpoints in `data/`.
"""

from tfm_edu.train.history import History
from tfm_edu.train.loop import fit, warmup_schedule

__all__ = ["History", "fit", "warmup_schedule"]
