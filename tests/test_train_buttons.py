"""The Train page's Stop, Resume and Delete… buttons are on only when they apply to the selected run."""

from __future__ import annotations

import pytest

from pages.train_runs import action_buttons


@pytest.mark.parametrize("status, expected", [
    (None, (False, False, False)),  # no run chosen
    ({"state": "starting", "checkpoint": None}, (True, False, False)),
    ({"state": "running", "checkpoint": "runs/a/checkpoints/step_00000010"}, (True, False, False)),
    ({"state": "stopping", "checkpoint": "runs/a/checkpoints/step_00000010"}, (False, False, False)),
    ({"state": "stopped", "checkpoint": "runs/a/checkpoints/step_00000010"}, (False, True, True)),
    ({"state": "failed", "checkpoint": None}, (False, False, True)),  # nothing to resume from
    ({"state": "finished", "checkpoint": "runs/a/checkpoints/step_00000100"}, (False, True, True)),
])
def test_each_button_is_on_only_in_the_states_it_applies_to(status: dict | None, expected: tuple) -> None:
    assert tuple(b.interactive for b in action_buttons(status, writable=True)) == expected


def test_a_read_only_app_turns_every_action_off() -> None:
    for state in ("running", "stopped", "finished"):
        status = {"state": state, "checkpoint": "runs/a/checkpoints/step_00000010"}
        assert [b.interactive for b in action_buttons(status, writable=False)] == [False, False, False]
