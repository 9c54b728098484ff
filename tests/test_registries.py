"""The registry decorator every registry in core/ is made from (models, data kinds, objectives)."""

import pytest

from core.registries import registrar


def test_a_registered_class_is_named_and_listed_and_a_second_class_under_its_name_is_refused():
    table: dict[str, type] = {}
    register = registrar(table, "kind", "data kind")

    @register("tones")
    class Tones:
        pass

    assert table == {"tones": Tones} and Tones.kind == "tones"
    assert register("tones")(Tones) is Tones  # registering the same class again is harmless
    with pytest.raises(ValueError, match="data kind 'tones' is registered twice"):
        register("tones")(type("Other", (), {}))
