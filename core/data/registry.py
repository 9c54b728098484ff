"""The data-kind registry, at the bottom of core.data: a kind is a config dataclass that builds splits.

    @register_kind("tones")
    @dataclass
    class ToneData:
        clips: int = 64 ...                 # the kind's own settings, validated in __post_init__
        def build(self, split, model_config) -> SplitDataset: ...

A training config's `data` section is `{"kind": "tones", **fields}`; `core.data` (the top of the
package) imports every kind module, so all are registered before a config is read.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
KINDS: dict[str, type] = {}


def register_kind(name: str) -> Callable[[type], type]:
    """Class decorator: make a data config class the kind `name`."""

    def deco(cls: type) -> type:
        if KINDS.get(name, cls) is not cls:
            raise ValueError(f"data kind {name!r} is registered twice")
        cls.kind = name
        KINDS[name] = cls
        return cls

    return deco


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
