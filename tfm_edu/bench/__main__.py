"""`python -m tfm_edu.bench <benchmark> [options]`: run one benchmark (`tfm_edu.bench.main`).

`python -m tfm_edu.bench` alone lists them; `--help` after a benchmark lists its options.
"""

from __future__ import annotations

import numpy as np

from tfm_edu.bench import main

__all__: list[str] = []

if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
