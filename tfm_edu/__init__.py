"""tfm_edu: Transformers from scratch, the package behind the course's notebooks.

Each module holds one idea of the course (see README, "How the code is organised"); notebooks
build an idea cell by cell and then import it from here.
"""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["seed_everything", "__version__"]
__version__ = "0.1.0"


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch (CPU and GPU) so that a chapter reruns identically.

    Args:
        seed: any non-negative integer.

    Returns:
        The seed, so a notebook can print what it used.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- learners' code may still use the global RNG
    os.environ["PYTHONHASHSEED"] = str(seed)
    import torch  # imported here so that chapter 1 (NumPy only) starts fast

    torch.manual_seed(seed)  # seeds CPU and every GPU
    return seed
