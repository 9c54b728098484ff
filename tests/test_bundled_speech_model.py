"""The bundled speech model continues voices it never heard with speech-like sound (scripts/speech_measure.py).

CI-sized: one held-out clip of the speech corpus's test split (voices never heard in training, rendered by
the `speech_corpus` fixture where this machine has none) and the Audio page's spoken example, each cut where
it is voiced and continued for 2 s at the page's temperature for the model, for two seeds, as the page
continues them.
The whole measure over 16 clips, beside the melody model, is docs/speech_measure.json (`make speech-model`).
"""

from pathlib import Path

import numpy as np
import pytest

from core.audio import read_audio
from core.checkpoints import load_checkpoint
from core.continuation import suggested_temperature
from scripts.speech_measure import (
    ANALYSIS_RATE,
    continuation_of,
    cut_to_voiced,
    describe,
    speech_like,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speech_model():
    return load_checkpoint(ROOT / "checkpoints" / "speech-wavenet")


def primer_of(path: Path) -> np.ndarray:
    """The second of `path` before the first point past 1 s where it has been voiced for three frames."""
    audio = read_audio(path, ANALYSIS_RATE)
    cut = cut_to_voiced(audio, ANALYSIS_RATE, 1.0)
    assert cut is not None, f"{path.name} is never voiced after 1 s"
    return audio[cut - ANALYSIS_RATE : cut]


def continued(model, primer: np.ndarray, seed: int) -> np.ndarray:
    """`model`'s 2 s continuation of `primer` as the Audio page makes it, at the page's temperature for it."""
    return continuation_of(model, primer, 2.0, suggested_temperature(model.config.extra), seed)


def first_test_clip(corpus: Path) -> Path:
    return sorted((corpus / "test").glob("*.wav"))[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_held_out_voice_is_continued_voiced_near_its_pitch_and_level(speech_model, speech_corpus, seed):
    primer = primer_of(first_test_clip(speech_corpus))
    row = describe(continued(speech_model, primer, seed), primer, ANALYSIS_RATE)
    assert row["voiced_share"] >= 0.15 and row["silent_share"] < 0.5, row
    assert 0.5 <= row["level_ratio"] <= 2.0, row
    assert speech_like(row), row


@pytest.mark.parametrize("seed", [0, 1])
def test_the_pages_spoken_example_is_continued_as_speech_and_the_melody_model_holds_a_note(speech_model, seed):
    primer = primer_of(ROOT / "assets" / "audio" / "spoken.wav")
    speech = describe(continued(speech_model, primer, seed), primer, ANALYSIS_RATE)
    assert speech["voiced_share"] >= 0.15 and 0.5 <= speech["level_ratio"] <= 2.0, speech
    melody = load_checkpoint(ROOT / "checkpoints" / "melodies-wavenet")
    notes = describe(continued(melody, primer, seed), primer, ANALYSIS_RATE)
    assert speech["voicing_changes_per_s"] > notes["voicing_changes_per_s"], (speech, notes)
