"""The bottom of core.models: the registry a model family adds itself to.

A family module registers with `from core.models.registry import register` and `@register("name")`.
It imports this module, never the core.models package: the package imports every family to fill
the registry (core.models.model_class, build_model, model_types), so a family importing the
package back would be an import cycle.
"""

from __future__ import annotations

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
