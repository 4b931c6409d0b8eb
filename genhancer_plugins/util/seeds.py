"""Seeds derived from what identifies a draw, so a resumed run draws exactly what
an uninterrupted one would, without saving random-number-generator state."""

from __future__ import annotations

import numpy as np


def step_seed(*parts: int) -> int:
    """A well-mixed seed from integers such as (seed, stage, micro-step, rank)."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0])
