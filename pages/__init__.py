"""The app's pages. Each page module has `build(store)`, which lays out the page inside the
current Blocks context; app.py routes one URL to each entry of PAGES. Adding a page is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from core.model_store import ModelStore
from pages import audio, digits, models, receptive_field, recurrence, sequences, signals, train


class Page(NamedTuple):
    title: str  # shown in the navbar
    path: str  # URL path, e.g. "audio" -> http://host:port/audio
    build: Callable[[ModelStore], None]


PAGES: list[Page] = [
    Page("Audio", "audio", audio.build),
    Page("Digits", "digits", digits.build),
    Page("Models", "models", models.build),
    Page("Train", "train", train.build),
    Page("Receptive field", "receptive-field", receptive_field.build),
    Page("Recurrence", "recurrence", recurrence.build),
    Page("Signals", "signals", signals.build),
    Page("Sequences", "sequences", sequences.build),
]
