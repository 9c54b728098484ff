"""The data-kind registry, at the bottom of core.data: a kind is a config dataclass that builds splits.

    @register_kind("tones")
    @dataclass
    class ToneData:
        clips: int = 64 ...                 # the kind's own settings, validated in __post_init__
        def build(self, split, model_config) -> SplitDataset: ...
        def footprint(self, model_config) -> (bytes, how) | None: ...   # optional: its size, not built

A training config's `data` section is `{"kind": "tones", **fields}`; `core.data` (the top of the
package) imports every kind module, so all are registered before a config is read.
"""

from __future__ import annotations

from core.errors import ConfigError
from core.registries import registrar

SPLITS: tuple[str, ...] = ("train", "valid", "test")
KINDS: dict[str, type] = {}


register_kind = registrar(KINDS, "kind", "data kind")  # @register_kind("name") on a kind's config class


class DataKind:
    """The base of every kind's config class: `build(split, model_config)`, and the model settings it implies."""

    path_fields: tuple[str, ...] = ()  # the settings that name a file or folder to read (an app may bound them)

    def build(self, split: str, model_config):
        raise NotImplementedError

    def model_settings(self, model: dict) -> dict:
        """Model config values this data fixes (its frame size, training mean...): `model` holds the settings
        the config gives other than their defaults, and only the ones it lacks are used. None by default."""
        return {}

    def footprint(self, model_config) -> tuple[int, str] | None:
        """(bytes, how: the fields that set it) the train and valid splits would hold in memory, computed
        without building them; None when only reading files could tell (a folder of audio, MNIST...)."""
        return None


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
