"""Checks shared by the forecast modules: the forecast horizon."""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_horizon(horizon: Any) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"`horizon` must be an int >= 1; got {horizon!r}.")
    return int(horizon)
