"""The bundled audio model continues an instrument recording with notes, not noise.

Each primer is continued for 2 s, four variations in one batch, at temperatures 0.85 (the Audio
page's default) and 1.0. A continuation sounds like notes when its first second is not noise
(spectral flatness under 0.15, not silent: it may glide from the primer's timbre to one it
learned) and its last second is tonal: median pitch periodicity over 0.7 and flatness under
0.15 (white noise: 0.11 and 0.98; the primers: about 0.95 and 0.01); see scripts/tonality.py.
On the 48 test-melody continuations of the model card, 47 end tonal at each temperature, so 7
of 8 variations are asked for here. For the melody primers, 6 of 8 must also start on the
primer's last pitch (a model that answers every primer with its own stuck tone fails that).
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.audio import read_audio
from core.checkpoints import load_checkpoint
from core.continuation import continue_audio, dequantise, quantise
from core.models.wavenet import WaveNet
from scripts.tonality import flatness, outcome, same_pitch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(ROOT / "checkpoints/melodies-wavenet")


def tonal(x: np.ndarray, sr: int) -> bool:
    return outcome(x, sr) == "tonal" and flatness(x, sr) < 0.15


def notes(x: np.ndarray, sr: int) -> bool:
    first, last = x[:sr], x[-sr:]
    return outcome(first, sr) != "silent" and flatness(first, sr) < 0.15 and tonal(last, sr)


def continuations(model, primer: np.ndarray) -> np.ndarray:
    """(8, 2 s) continuations of primer (T,): 4 variations at temperature 0.85, then 4 at 1.0."""
    out = [np.concatenate(list(continue_audio(model, primer, 2.0, temperature=t, batch=4, seed=0)), axis=1)
           for t in (0.85, 1.0)]
    return np.concatenate(out)


def tonal_variations(model, primer: np.ndarray) -> int:
    """How many of the 8 continuations sound like notes (see the module docstring)."""
    out = continuations(model, primer)
    assert out.shape == (8, 2 * model.config.sample_rate)
    return sum(notes(v, model.config.sample_rate) for v in out)


@pytest.mark.parametrize("wav", ["flute-bwv409.wav", "violin-bwv302.wav"])
def test_an_unseen_melody_is_continued_with_notes(model, wav):
    primer = read_audio(DATA / wav, model.config.sample_rate)
    sr = model.config.sample_rate
    assert tonal(primer, sr), "the primer itself must be a note"
    out = continuations(model, primer)
    assert sum(notes(v, sr) for v in out) >= 7
    heard = dequantise(model, quantise(model, primer))
    assert sum(same_pitch(heard, v, sr) for v in out) >= 6


@pytest.mark.parametrize("hz", [196.0, 440.0])
def test_a_harmonic_tone_recorded_at_44k_stereo_is_continued_with_notes(model, tmp_path, hz):
    t = np.arange(44100) / 44100
    tone = 0.3 * sum(np.sin(2 * np.pi * h * hz * t) / h for h in range(1, 6))
    sf.write(tmp_path / "tone.wav", np.stack([tone, 0.8 * tone], axis=1), 44100, subtype="PCM_16")
    primer = read_audio(tmp_path / "tone.wav", model.config.sample_rate)  # mixed to mono, resampled to 8 kHz
    assert tonal_variations(model, primer) >= 7


def test_noise_and_an_untrained_model_fail_the_measure(model):
    sr = model.config.sample_rate
    assert not tonal(np.random.default_rng(0).uniform(-0.5, 0.5, sr).astype(np.float32), sr)
    torch.manual_seed(0)
    untrained = WaveNet(model.config).eval()
    assert tonal_variations(untrained, read_audio(DATA / "flute-bwv409.wav", sr)) == 0
