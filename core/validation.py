"""The checks config dataclasses run in `__post_init__`: each failure is a ConfigError naming the field."""

from __future__ import annotations

import math

import numpy as np

from core.errors import ConfigError


def need(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


def is_int(value: object) -> bool:
    """An integer (Python or numpy), and not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float, and not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_int(name: str, value: object, low: int) -> None:
    """ConfigError unless `value` is an integer >= low; the message names `name`."""
    need(is_int(value) and value >= low, f"{name} must be an integer >= {low}, got {value!r}")
