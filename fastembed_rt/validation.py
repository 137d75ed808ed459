"""Checks of the plain values the public API takes, with errors that name the argument."""

from __future__ import annotations

import numpy as np


def positive_int(value, name: str) -> int:
    """`value` as an int when it is an integer >= 1 (numpy's integers too, never a bool), else a ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
