"""The recurrence page's controls as a Schedule, and the seed's four animations as presets.

    schedule_from_controls(layout, periods, boundaries, chunk_size, vskip, carry)   -> Schedule (ConfigError naming
                                                                                      the control that is wrong)
    PRESETS                     name -> the one line the preset radio says about it
    preset_controls(name)       the controls' values that draw that preset (periods and boundaries as text)
    periods_for_layout(...)     the periods box after the layout changes: all ones for a stack
"""

from __future__ import annotations

from core.errors import ConfigError
from core.models.wayback_schedule import LAYOUTS, Schedule, seed_animations
from pages.checks import require, whole_in

MAX_STEPS = 96  # steps the grid draws, at most (every loss step's reach is embedded in the page)
MAX_LAYERS = 6
MAX_CHUNK = 64
NEVER = ("none", "never", "-", "∞", "inf")  # a boundary that never cuts

PRESETS: dict[str, str] = {
    "full backprop": "two layers, every step, never cut: the gradient runs back to the first step, memory grows",
    "truncated": "the same stack cut every 9 steps: a loss reaches at most 9 steps back, 18 states held",
    "multi-scale": "three layers updating every 1, 3 and 9 steps, never cut: the top layer takes few steps",
    "multi-scale truncated": "the same, the lower two cut after 3 of their own steps: 3 + 3 states, while the "
                             "uncut top layer still reaches back to the start",
}


def parse_entries(name: str, text: str | None, allow_never: bool) -> list[int | None]:
    """'1, 3, 3' -> [1, 3, 3]; with allow_never, 'none' (or never, -, ∞) -> None. ConfigError naming `name`."""
    words = [w.strip() for w in (text or "").replace(";", ",").split(",")]
    require(any(words), f"{name}: give one whole number per layer, bottom first, e.g. '1, 3, 3'")
    out: list[int | None] = []
    for i, word in enumerate(words):
        if allow_never and word.lower() in NEVER:
            out.append(None)
            continue
        require(word.isdigit() and int(word) >= 1,
                f"{name}[{i}] must be a whole number >= 1" + (" or 'none' (never cut)" if allow_never else "")
                + f", got {word!r}")
        out.append(int(word))
    require(len(out) <= MAX_LAYERS, f"{name}: at most {MAX_LAYERS} layers here, got {len(out)}")
    return out


def schedule_from_controls(layout: str, periods: str | None, boundaries: str | None, chunk_size: float,
                           vskip: bool, carry: bool) -> Schedule:
    """The Schedule the controls describe; ConfigError with an actionable message when they cannot make one.

    periods and boundaries are comma-separated, one entry per layer, bottom first; a boundary 'none' never cuts.
    """
    require(layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {layout!r}")
    chunk = whole_in("chunk size", chunk_size, 1, MAX_CHUNK)
    bounds = parse_entries("boundaries", boundaries, allow_never=True)
    steps = parse_entries("periods", periods, allow_never=False)
    require(len(steps) == len(bounds), f"periods has {len(steps)} entries but boundaries has {len(bounds)}: give "
            "one of each per layer")
    require(isinstance(vskip, bool) and isinstance(carry, bool), "vskip and carry must be true or false")
    return Schedule(layout, tuple(steps), tuple(bounds), chunk, vskip=vskip, carry=carry)


def format_entries(values: tuple[int | None, ...]) -> str:
    """(1, 3, None) -> '1, 3, none' (what the text boxes show)."""
    return ", ".join("none" if v is None else str(v) for v in values)


def preset_controls(name: str) -> tuple[str, str, str, int, bool, bool, int]:
    """(layout, periods, boundaries, chunk size, vskip, carry, steps drawn) of one of the seed's four animations."""
    animations = seed_animations()
    if name not in animations:
        raise ConfigError(f"preset must be one of {list(animations)}, got {name!r}")
    schedule, steps = animations[name]
    return (schedule.layout, format_entries(schedule.periods), format_entries(schedule.boundaries),
            schedule.chunk_size, schedule.vskip, schedule.carry, steps)


def periods_for_layout(layout: str, periods: str | None, boundaries: str | None) -> str:
    """The periods box once the layout is `layout`: a stack updates every layer every step, so all ones (one per
    boundary); a wayback keeps what the box says."""
    if layout != "stack":
        return periods or ""
    layers = max(1, len([w for w in (boundaries or "").split(",") if w.strip()]))
    return ", ".join(["1"] * layers)
