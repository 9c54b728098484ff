"""The one shape of every registry in core/: a table of classes by name, filled by a class decorator.

    REGISTRY: dict[str, type] = {}
    register = registrar(REGISTRY, "model_type", "model type")

    @register("wavenet")
    class WaveNet: ...          # WaveNet.model_type == "wavenet"; REGISTRY["wavenet"] is WaveNet
"""

from __future__ import annotations

from collections.abc import Callable


def registrar(table: dict[str, type], attribute: str, what: str) -> Callable[[str], Callable[[type], type]]:
    """A decorator factory: `@register(name)` puts the class in `table` under `name` and sets its `attribute`
    to `name`; a second class under one name is a ValueError naming `what`."""

    def register(name: str) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            if table.get(name, cls) is not cls:
                raise ValueError(f"{what} {name!r} is registered twice")
            setattr(cls, attribute, name)
            table[name] = cls
            return cls

        return deco

    return register
