"""The bottom of core.models: the registry a model family adds itself to.

A family module registers with `from core.models.registry import register` and `@register("name")`.
It imports this module, never the core.models package: the package imports every family to fill
the registry (core.models.model_class, build_model, model_types), so a family importing the
package back would be an import cycle.
"""

from __future__ import annotations

from core.registries import registrar

REGISTRY: dict[str, type] = {}
register = registrar(REGISTRY, "model_type", "model type")  # @register("name") on a family class
