"""scripts/tonality.py: its measures tell a note from noise and a kept pitch from a new one."""

import numpy as np

from scripts.tonality import flatness, outcome, periodicity, same_pitch

SR = 8000


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * h * hz * t) / h for h in range(1, 6)).astype(np.float32)


def test_a_note_is_periodic_and_flat_spectrum_noise_is_not():
    noise = np.random.default_rng(0).uniform(-1, 1, SR).astype(np.float32)
    assert periodicity(tone(220), SR) > 0.95 and periodicity(noise, SR) < 0.3
    assert flatness(tone(220), SR) < 0.05 and flatness(noise, SR) > 0.8


def test_same_pitch_allows_less_than_a_semitone_and_no_octave_jump():
    assert same_pitch(tone(220), tone(224), SR)  # a third of a semitone sharp
    assert not same_pitch(tone(220), tone(262), SR)  # three semitones up
    assert not same_pitch(tone(220), tone(440), SR)
    assert not same_pitch(tone(220), np.zeros(SR, np.float32), SR), "silence keeps no pitch"


def test_the_last_second_is_told_tonal_silent_or_noisy():
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, SR).astype(np.float32)
    assert outcome(0.3 * tone(220), SR) == "tonal"
    assert outcome(noise, SR) == "noisy"
    assert outcome(0.001 * tone(220), SR) == "silent", "a note at -60 dBFS is a rest, not music"
    assert outcome(np.zeros(SR, np.float32), SR) == "silent"
