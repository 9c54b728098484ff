"""Model families and the registry that maps a checkpoint's `model_type` to its class.

A family registers itself with `@register("name")`; its class has a `Config` dataclass
(`config_class`), is built as `cls(config)`, and exposes `config`. Checkpoints store
`{"model_type": name, **asdict(config)}` in `config.json`.
"""

from __future__ import annotations

from core.config_dicts import dataclass_from_dict
from core.errors import ConfigError

REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: make a model family loadable by `name`."""

    def deco(cls: type) -> type:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"model type {name!r} is registered twice")
        cls.model_type = name
        REGISTRY[name] = cls
        return cls

    return deco


def model_class(name: str) -> type:
    """The class registered as `name`; ConfigError listing the known names otherwise."""
    _import_families()
    if name not in REGISTRY:
        raise ConfigError(f"unknown model_type {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def config_from_dict(d: dict):
    """Build a model config from a `config.json`-style dict; unknown keys are an error."""
    d = dict(d)
    name = d.pop("model_type", None)
    if name is None:
        raise ConfigError("config has no 'model_type'")
    return dataclass_from_dict(model_class(name).config_class, d, f"{name} config")


def build_model(config):
    """Instantiate the family whose config class `config` is."""
    _import_families()
    for cls in REGISTRY.values():
        if isinstance(config, cls.config_class):
            return cls(config)
    raise ConfigError(f"no model family takes a {type(config).__name__}")


def _import_families() -> None:
    # Importing a family module runs its @register decorator.
    from core.models import pixelcnn, wavenet, wayback  # noqa: F401
