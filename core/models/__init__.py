"""Model families and the registry that maps a checkpoint's `model_type` to its class.

A family registers itself with `@register("name")` from core.models.registry (the bottom of this
package: a family never imports the package itself, which imports every family); its class has a
`Config` dataclass (`config_class`), is built as `cls(config)`, and exposes `config`. Checkpoints store
`{"model_type": name, **asdict(config)}` in `config.json`.
"""

from __future__ import annotations

from core.config_dicts import dataclass_from_dict
from core.errors import ConfigError
from core.models.registry import REGISTRY, register

__all__ = ["REGISTRY", "build_model", "config_from_dict", "model_class", "model_types", "register"]


def model_class(name: str) -> type:
    """The class registered as `name`; ConfigError listing the known names otherwise."""
    _import_families()
    if name not in REGISTRY:
        raise ConfigError(f"unknown model_type {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def model_types() -> list[str]:
    """The names of every model family, sorted (each family module is imported first, so all are registered)."""
    _import_families()
    return sorted(REGISTRY)


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
    from core.models import ghmm, pixelcnn, srnn, vrnn, wavenet, wayback  # noqa: F401
