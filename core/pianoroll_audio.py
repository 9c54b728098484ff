"""Hear a pianoroll: each sounding key a sine at its equal-tempered pitch, with short fades; and write it as MIDI.

    audio = pianoroll_to_audio(roll)            # roll (T, 88) 0/1, key k = MIDI note 21 + k -> float32 (S,)
    data = pianoroll_to_midi(roll)              # bytes of a standard MIDI file (format 0, piano)

A note is a run of consecutive active frames of one key: it starts at its first frame and ends at
the end of its last, so a held chord is one tone, not a tone per frame. Every note fades in and
out over `fade_seconds` (no clicks); the sum is scaled to a peak of 0.8. The sines are computed
on the global time axis, so two notes of one key joined by a fade keep their phase.
"""

from __future__ import annotations

import struct

import numpy as np

from core.errors import ConfigError

LOWEST_MIDI = 21  # key 0 of an 88-key roll is A0
PEAK = 0.8
TICKS_PER_BEAT = 480


def _check_roll(roll: np.ndarray) -> np.ndarray:
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] > 128 - LOWEST_MIDI:
        raise ConfigError(f"a pianoroll must be (T, keys) with keys <= {128 - LOWEST_MIDI}, got shape {roll.shape}")
    return roll > 0.5


def notes(roll: np.ndarray) -> list[tuple[int, int, int]]:
    """roll (T, K) -> [(key, first frame, end frame (exclusive)), ...] for every run of active frames, by start."""
    active = _check_roll(roll)
    edges = np.diff(np.pad(active.astype(np.int8), ((1, 1), (0, 0))), axis=0)  # (T + 1, K): +1 onset, -1 offset
    keys, starts = np.nonzero(edges.T == 1)  # both sorted by key, then time: the i-th onset pairs with the i-th offset
    _, ends = np.nonzero(edges.T == -1)
    found = sorted(zip(starts.tolist(), keys.tolist(), ends.tolist(), strict=True))
    return [(k, s, e) for s, k, e in found]


def key_frequency(key: int) -> float:
    """Equal-tempered frequency in Hz of key `key` (0 = A0 = 27.5 Hz, 48 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((key + LOWEST_MIDI - 69) / 12)


def pianoroll_to_audio(roll: np.ndarray, sample_rate: int = 16000, seconds_per_step: float = 0.3,
                       fade_seconds: float = 0.01) -> np.ndarray:
    """roll (T, K) 0/1 -> mono float32 audio (T * hop,), hop = round(seconds_per_step * sample_rate), peak 0.8."""
    if not isinstance(sample_rate, int) or sample_rate < 1000:
        raise ConfigError(f"sample_rate must be an integer >= 1000, got {sample_rate!r}")
    if not seconds_per_step > 0 or not fade_seconds >= 0:
        raise ConfigError(f"seconds_per_step must be > 0 and fade_seconds >= 0, got {seconds_per_step}, {fade_seconds}")
    hop = max(1, round(seconds_per_step * sample_rate))
    out = np.zeros(len(roll) * hop)
    fade = round(fade_seconds * sample_rate)
    for key, start, end in notes(roll):
        n = np.arange(start * hop, end * hop)
        tone = np.sin(2 * np.pi * key_frequency(key) * n / sample_rate)
        ramp = min(fade, len(n) // 2)
        if ramp:
            envelope = np.linspace(0.0, 1.0, ramp, endpoint=False)
            tone[:ramp] *= envelope
            tone[len(n) - ramp:] *= envelope[::-1]
        out[n] += tone
    peak = np.abs(out).max(initial=0.0)
    return (out * (PEAK / peak) if peak > 0 else out).astype(np.float32)


def _varlen(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    groups = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        groups.append(0x80 | (value & 0x7F))
    return bytes(reversed(groups))


def pianoroll_to_midi(roll: np.ndarray, seconds_per_step: float = 0.3, velocity: int = 80) -> bytes:
    """roll (T, K) 0/1 -> a standard MIDI file (format 0, one piano track), one beat per step at 60 / seconds_per_step
    beats per minute; each note is a run of active frames, as in `notes`."""
    if not 0 < seconds_per_step < 16 or not 1 <= velocity <= 127:
        raise ConfigError(f"seconds_per_step must be in (0, 16) and velocity in [1, 127], "
                          f"got {seconds_per_step}, {velocity}")
    events = []  # (tick, order, status, note, velocity): note-offs sort before note-ons at one tick
    for key, start, end in notes(roll):
        events += [(start * TICKS_PER_BEAT, 1, 0x90, key + LOWEST_MIDI, velocity),
                   (end * TICKS_PER_BEAT, 0, 0x80, key + LOWEST_MIDI, 0)]
    tempo = round(seconds_per_step * 1e6)  # microseconds per beat
    track = bytearray(b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big") + b"\x00\xc0\x00")  # tempo, program 0 (piano)
    now = 0
    for tick, _, status, note, vel in sorted(events):
        track += _varlen(tick - now) + bytes([status, note, vel])
        now = tick
    track += b"\x00\xff\x2f\x00"  # end of track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)
