"""scripts/speech_measure.py: its parts on synthetic signals with known answers, and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import torch
from scipy.signal import lfilter

from core.audio import write_wav
from core.checkpoints import save_checkpoint
from core.models.wavenet import WaveNet
from core.pitch import voicing
from scripts.speech_measure import (
    FRAME_S,
    HOP_S,
    cut_to_voiced,
    describe,
    envelope_distance,
    level_ratio,
    main,
    speech_like,
)
from tests.conftest import tiny_audio_config

SR = 16000
N, HOP = round(FRAME_S * SR), round(HOP_S * SR)


def pulses(f0: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    """A band-limited pulse train at f0 Hz: every harmonic up to 4 kHz at equal strength, peak `amplitude`."""
    t = np.arange(round(seconds * SR)) / SR
    harmonics = np.arange(1, int(4000 / f0) + 1)
    return amplitude * np.cos(2 * np.pi * f0 * np.outer(t, harmonics)).mean(axis=1)


def vowel(f0: float, seconds: float, formant: float = 700.0) -> np.ndarray:
    """Pulses through a two-pole resonance at `formant` Hz: a crude vowel, RMS about 0.1."""
    r, theta = 0.97, 2 * np.pi * formant / SR
    y = lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], pulses(f0, seconds))
    return (0.1 * y / np.sqrt(np.mean(y**2))).astype(np.float32)


def noise(seconds: float, rms: float = 0.05, seed: int = 0) -> np.ndarray:
    return (rms * np.random.default_rng(seed).standard_normal(round(seconds * SR))).astype(np.float32)


def test_a_pulse_train_is_voiced_at_its_f0_within_two_percent():
    for f0 in (90.0, 150.0, 220.0, 410.0):
        labels, est = voicing(pulses(f0, 0.5), SR)
        assert (labels == "voiced").all(), f0
        assert np.allclose(est, f0, rtol=0.02), (f0, est.min(), est.max())
    labels, est = voicing(vowel(120.0, 0.5), SR)
    assert (labels == "voiced").mean() > 0.95 and abs(np.median(est[labels == "voiced"]) / 120.0 - 1) < 0.02


def test_noise_is_unvoiced_and_silence_is_neither():
    labels, f0 = voicing(noise(1.0), SR)
    assert (labels == "unvoiced").mean() > 0.95 and (f0[labels != "voiced"] == 0).all()
    labels, f0 = voicing(np.zeros(SR, np.float32), SR)
    assert (labels == "silent").all() and (f0 == 0).all()
    labels, _ = voicing(0.001 * vowel(150.0, 0.5), SR)  # -70 dBFS: below SILENT_RMS
    assert (labels == "silent").all()


def test_cut_falls_after_the_primer_length_where_voicing_has_lasted_three_frames():
    audio = np.concatenate([noise(1.0), vowel(150.0, 0.5), noise(0.5)])
    cut = cut_to_voiced(audio, SR, prime_seconds=0.5)
    assert SR + N // 2 <= cut <= SR + N + 3 * HOP, cut  # the voiced stretch starts at 1 s
    labels, _ = voicing(audio[cut - N : cut], SR)
    assert labels.tolist() == ["voiced"]
    steady = vowel(150.0, 2.0)
    assert 0.7 * SR <= cut_to_voiced(steady, SR, prime_seconds=0.7) < 0.7 * SR + HOP + 1
    assert cut_to_voiced(noise(2.0), SR, prime_seconds=0.5) is None
    assert cut_to_voiced(np.concatenate([vowel(150.0, 0.5), noise(1.0)]), SR, prime_seconds=1.0) is None


def test_the_envelope_distance_follows_the_resonance_not_the_pitch():
    low, high = vowel(110.0, 1.0, formant=700.0), vowel(180.0, 1.0, formant=700.0)
    other = vowel(110.0, 1.0, formant=2200.0)
    assert envelope_distance(low, low, SR) == 0.0
    assert envelope_distance(low, high, SR) < 0.5 * envelope_distance(low, other, SR)
    assert envelope_distance(noise(1.0, seed=1), noise(1.0, seed=2), SR) < 0.5 * envelope_distance(noise(1.0), low, SR)


def test_level_ratio_is_the_ratio_of_rms():
    x = vowel(150.0, 0.5)
    assert abs(level_ratio(2 * x, x) - 2.0) < 1e-6 and abs(level_ratio(x, 4 * x) - 0.25) < 1e-6


def test_syllables_are_speech_like_a_stuck_tone_noise_and_a_shout_are_not():
    rng = np.random.default_rng(3)
    syllables = np.concatenate([part for _ in range(8) for part in
                                (vowel(rng.uniform(130, 170), 0.15), noise(0.1, rms=0.03, seed=int(rng.integers(99))))])
    primer = np.concatenate([vowel(150.0, 0.3), noise(0.1, rms=0.03), vowel(140.0, 0.3)])
    assert speech_like(describe(syllables, primer, SR))
    assert not speech_like(describe(vowel(150.0, 2.0), primer, SR)), "voiced throughout: no alternation"
    assert not speech_like(describe(noise(2.0), primer, SR)), "never voiced"
    assert not speech_like(describe(3 * syllables, primer, SR)), "three times as loud"
    octave_up = np.concatenate([part for _ in range(8) for part in (vowel(300.0, 0.15), noise(0.1, rms=0.03))])
    assert not speech_like(describe(octave_up, primer, SR)), "an octave above the primer's f0"


def test_cli_measures_two_models_and_the_real_continuation_side_by_side(tmp_path, capsys):
    torch.manual_seed(0)
    first = save_checkpoint(WaveNet(tiny_audio_config()), tmp_path / "a")
    config = tiny_audio_config(extra={"temperature": 1.0})  # a model that suggests its own temperature
    config.sample_rate = SR
    second = save_checkpoint(WaveNet(config), tmp_path / "b")
    for i in range(3):
        write_wav(tmp_path / "wavs" / f"clip{i}.wav", np.concatenate([noise(0.3), vowel(130.0 + 20 * i, 1.2)]), SR)
    write_wav(tmp_path / "wavs" / "noise.wav", noise(2.0), SR)  # never voiced: skipped
    report = main(["--checkpoints", str(first), str(second), "--wavs", str(tmp_path / "wavs"), "--clips", "2",
                   "--prime-seconds", "0.5", "--seconds", "0.25"])
    assert report == json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["clips"] == 2 and report["temperature"] == {str(first): 0.85, str(second): 1.0}  # as the page
    assert set(report["models"]) == {str(first), str(second), "real continuation"}
    real = report["models"]["real continuation"]
    assert real["median"]["voiced_share"] > 0.9 and abs(real["median"]["f0_semitones_from_primer"]) < 0.5
    assert f"envelope_to {second}" in report["models"][str(first)]["median"]
