"""Pianoroll playback (core/pianoroll_audio.py): notes are runs of active frames, each a faded sine at its key's
pitch; the MIDI file holds exactly those notes at one beat per step."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from core.errors import ConfigError
from core.pianoroll_audio import key_frequency, notes, pianoroll_to_audio, pianoroll_to_midi


def small_roll() -> np.ndarray:
    roll = np.zeros((6, 88), dtype=np.float32)
    roll[0:3, 0] = 1  # A0 held three frames
    roll[4, 0] = 1  # A0 again after a rest
    roll[1:6, 48] = 1  # A4 from frame 1 to the end
    return roll


def test_notes_are_runs_of_active_frames_sorted_by_start():
    assert notes(small_roll()) == [(0, 0, 3), (48, 1, 6), (0, 4, 5)]


def test_key_48_is_a4_at_440_hz_and_key_0_is_a0():
    assert key_frequency(48) == pytest.approx(440.0) and key_frequency(0) == pytest.approx(27.5)


def test_a_held_key_sounds_at_its_pitch_with_faded_ends():
    roll = np.zeros((4, 88), dtype=np.float32)
    roll[:, 48] = 1
    audio = pianoroll_to_audio(roll, sample_rate=16000, seconds_per_step=0.25, fade_seconds=0.01)
    assert audio.shape == (16000,) and audio.dtype == np.float32
    assert np.abs(audio).max() == pytest.approx(0.8, abs=1e-6)
    # Faded in and out linearly over 160 samples: no click at either end.
    ramp = 0.8 * np.arange(1, 17) / 160
    assert np.all(np.abs(audio[:16]) <= ramp + 1e-6) and np.all(np.abs(audio[-16:][::-1]) <= ramp + 1e-6)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / 16000)[spectrum.argmax()] == pytest.approx(440.0, abs=1.0)
    assert not pianoroll_to_audio(np.zeros((3, 88))).any()


def _midi_notes(data: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """(ticks per beat, [(tick, status, note)]) of a file pianoroll_to_midi wrote (tempo and program first)."""
    assert data[:4] == b"MThd"
    length, fmt, tracks, division = struct.unpack(">IHHH", data[4:14])
    assert (length, fmt, tracks) == (6, 0, 1) and data[14:18] == b"MTrk"
    track = data[22:22 + struct.unpack(">I", data[18:22])[0]]
    i, tick, events = 10, 0, []  # skip the tempo (7 bytes) and program change (3 bytes) events
    while track[i + 1:i + 2] != b"\xff":
        delta = 0
        while True:
            delta, byte = (delta << 7) | (track[i] & 0x7F), track[i]
            i += 1
            if byte < 0x80:
                break
        tick += delta
        events.append((tick, track[i], track[i + 1]))
        i += 3
    return division, events


def test_midi_holds_each_note_once_at_one_beat_per_step():
    division, events = _midi_notes(pianoroll_to_midi(small_roll()))
    ons = sorted((t // division, n - 21) for t, s, n in events if s == 0x90)
    offs = sorted((t // division, n - 21) for t, s, n in events if s == 0x80)
    assert ons == [(0, 0), (1, 48), (4, 0)] and offs == [(3, 0), (5, 0), (6, 48)]


def test_a_roll_that_is_not_two_dimensional_is_refused():
    with pytest.raises(ConfigError, match="pianoroll"):
        pianoroll_to_audio(np.zeros(88))
