"""Input checks shared by the pages: each raises ConfigError with a message naming the control."""

from __future__ import annotations

from core.errors import ConfigError


def is_whole(x: object) -> bool:
    """True for an int or a float with no fractional part (what a gr.Number sends), never a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and float(x).is_integer()


def require(ok: bool, message: str) -> None:
    """ConfigError(message) unless ok."""
    if not ok:
        raise ConfigError(message)


def whole_in(name: str, value: object, low: int, high: int) -> int:
    """`value` as an int, after checking it is a whole number in [low, high]."""
    require(is_whole(value) and low <= value <= high, f"{name} must be a whole number in [{low}, {high}], "
            f"got {value!r}")
    return int(value)


def number_in(name: str, value: object, low: float, high: float) -> float:
    """`value` as a float, after checking it is a number in [low, high]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
    require(ok, f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def seed_or_none(value: object) -> int | None:
    """A seed box: blank = None (a fresh random seed), else a whole number in [0, 2^63)."""
    if value is None:
        return None
    require(is_whole(value) and 0 <= value < 2**63, f"seed must be a whole number >= 0, got {value!r}")
    return int(value)
