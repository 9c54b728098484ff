"""Voicing and pitch of a sound, frame by frame, and a clip's pitch register as a class id.

    voicing(x, sr)       per 40 ms frame (hop 10 ms): "silent", "voiced" or "unvoiced", and f0 in Hz
    median_f0(x, sr)     the median f0 of x's voiced frames (0 if none is voiced)
    pitch_class(x, sr)   which of PITCH_EDGES' bands that median falls in: the class a pitch-conditioned
                         WaveNet (its config's classes_from = "pitch") is trained and sampled with

A WaveNet hears about 0.1 s: after a pause it has no memory of how high the speaker's voice was, and a
speech model drifts to the middle of its training voices. Told the register as a class, it keeps it.
"""

from __future__ import annotations

import numpy as np
import soxr

ANALYSIS_RATE = 16000  # Hz: median_f0 hears every clip at this rate
FRAME_S, HOP_S = 0.04, 0.01
F0_MIN, F0_MAX = 60.0, 500.0
SILENT_RMS = 0.003  # about -50 dBFS: speech set to RMS 0.1 keeps its quiet consonants above this
VOICED_PEAK = 0.5  # white noise peaks near 0.2 over these lags at 40 ms frames; a vowel near 0.9
# Hz: the upper edges of the pitch registers but the last (class k is f0 in [edge k-1, edge k)), a third of
# an octave apart from low male to high female speech.
PITCH_EDGES = (95.0, 120.0, 151.0, 190.0, 240.0)
PITCH_CLASSES = len(PITCH_EDGES) + 1
CLASS_SOURCES = ("", "pitch")  # where a WaveNet's and an audio folder's classes come from: none, or the pitch


def frames(x: np.ndarray, sr: int) -> np.ndarray:
    """x (T,) -> (F, N) frames of FRAME_S with hop HOP_S (only whole frames; (0, N) if x is shorter)."""
    n, hop = round(FRAME_S * sr), round(HOP_S * sr)
    x = np.asarray(x, dtype=np.float64)
    if len(x) < n:
        return np.zeros((0, n))
    return np.lib.stride_tricks.sliding_window_view(x, n)[::hop]


def voicing(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of x (T,): (label (F,) of "silent" / "voiced" / "unvoiced", f0 (F,) in Hz, 0 unless voiced).

    A frame's normalised autocorrelation r(k) = sum x[n] x[n+k] / sqrt(sum x[n]^2 sum x[n+k]^2) is
    taken over lags of F0_MIN..F0_MAX; the period is the shortest lag whose r is a local peak within
    0.9 of the largest, so a pulse train is not heard an octave low at twice its period.
    """
    fr = frames(x, sr)
    fr = fr - fr.mean(axis=1, keepdims=True)
    n = fr.shape[1]
    lo, hi = int(sr / F0_MAX), min(int(np.ceil(sr / F0_MIN)), n - 2)
    labels = np.full(len(fr), "unvoiced", dtype=object)
    f0 = np.zeros(len(fr))
    rms = np.sqrt((fr**2).mean(axis=1)) if len(fr) else np.zeros(0)
    labels[rms < SILENT_RMS] = "silent"
    spectrum = np.fft.rfft(fr, 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : hi + 2]
    energy = np.cumsum(fr**2, axis=1)  # energy[:, m] = sum of x[0..m]^2
    total = energy[:, -1:]
    lags = np.arange(lo - 1, hi + 2)
    head = total - np.concatenate([np.zeros((len(fr), 1)), energy], axis=1)[:, lags]  # sum x[k..n-1]^2
    tail = energy[:, n - 1 - lags]  # sum x[0..n-1-k]^2
    r = ac[:, lags] / np.sqrt(head * tail + 1e-20)
    for i in np.flatnonzero(rms >= SILENT_RMS):
        inner = r[i, 1:-1]
        peaks = np.flatnonzero((inner >= r[i, :-2]) & (inner >= r[i, 2:]))
        if len(peaks) == 0 or inner[peaks].max() < VOICED_PEAK:
            continue
        k = peaks[np.argmax(inner[peaks] >= 0.9 * inner[peaks].max())]
        a, b, c = r[i, k], r[i, k + 1], r[i, k + 2]  # parabolic interpolation around the peak
        shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
        labels[i], f0[i] = "voiced", sr / (lo + k + shift)
    return labels, f0


def median_f0(x: np.ndarray, sr: int) -> float:
    """The median f0 (Hz) of the voiced frames of x (T,) at sr Hz, found at ANALYSIS_RATE; 0.0 if none is voiced.

    At 8 kHz a period's lag falls between two samples and, for a voice rich in harmonics, the peak there can
    drop below the next period's: heard at twice the rate, it does not.
    """
    if sr != ANALYSIS_RATE and len(x):
        x, sr = soxr.resample(np.asarray(x, dtype=np.float32), sr, ANALYSIS_RATE, "HQ"), ANALYSIS_RATE
    _, f0 = voicing(x, sr)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if len(voiced) else 0.0


def pitch_class(x: np.ndarray, sr: int) -> int:
    """x's (T,) pitch register: the PITCH_EDGES band of its median f0, in [0, PITCH_CLASSES).

    A clip with no voiced frame gets the middle class.
    """
    f0 = median_f0(x, sr)
    return int(np.searchsorted(PITCH_EDGES, f0, side="right")) if f0 > 0 else PITCH_CLASSES // 2
