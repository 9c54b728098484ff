"""Build a config dataclass from a JSON dict, refusing unknown keys with the list of known ones."""

from __future__ import annotations

from dataclasses import fields

from core.errors import ConfigError


def dataclass_from_dict(cls: type, d: dict | None, what: str):
    """`cls(**d)`, or ConfigError naming unknown keys or a bad value; `what` names the section."""
    d = dict(d or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"invalid {what}: {e}") from e
