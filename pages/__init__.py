"""The app's pages. Each page module has `build(store)`, which lays out the page inside the
current Blocks context; app.py routes one URL to each entry of PAGES. Adding a page is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from core.model_store import ModelStore
from pages import audio, digits, models, receptive_field, recurrence, sequences, signals, train
from pages.figures import use_theme_neutral_template

use_theme_neutral_template()  # every page's figures read in the light and the dark theme


class Page(NamedTuple):
    title: str  # shown in the navbar
    path: str  # URL path, e.g. "audio" -> http://host:port/audio
    build: Callable[[ModelStore], None]
    line: str  # what a visitor does there, under its picture on the home page


PAGES: list[Page] = [
    Page("Audio", "audio", audio.build, "Continue a clip (yours, or an example) with an audio WaveNet, and listen "
         "while it is generated."),
    Page("Digits", "digits", digits.build, "Draw MNIST digits of a class, complete a test digit or your own drawing, "
         "and see where the model is surprised."),
    Page("Models", "models", models.build, "The models served here, what each is, its config and card; pull one "
         "from the Hugging Face Hub or push one."),
    Page("Train", "train", train.build, "Start a training run, watch its curves and log live, stop, resume or "
         "delete it."),
    Page("Receptive field", "receptive-field", receptive_field.build, "How far back a dilated WaveNet sees, why "
         "that is cheap, and what generation costs."),
    Page("Recurrence", "recurrence", recurrence.build, "Truncated backprop and the wayback layout on a time × layer "
         "grid: how far each loss's gradient reaches."),
    Page("Signals", "signals", signals.build, "Forecast held-out Fourier curves with a ±2σ band, and compare "
         "models' error against the horizon."),
    Page("Sequences", "sequences", sequences.build, "Continue Bach chorale pianorolls with a VRNN or SRNN; watch a "
         "particle filter and its bounds."),
]
