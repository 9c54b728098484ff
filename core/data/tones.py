"""Seeded synthetic audio: sines, chords and chirps under an attack/decay envelope.

The smallest data set a WaveNet can learn in minutes on a CPU, and the one whose
answer is known: a pure tone at a fixed frequency (the classic 500 Hz overfitting
check) has a single spectral peak, so a page can show whether generated audio has it.

Each clip is

    x[n] = a * env[n] * s[n] / max|env * s|,   n = 0 .. T-1,  T = round(seconds * sample_rate)

where `s` is the tone (below), `env` rises linearly over a 10-100 ms attack and then
decays exponentially, and the peak amplitude `a` is drawn from [0.3, 0.9]. The tone:

- "sine":  one sinusoid at f, random phase.
- "chord": 2-4 notes of a major or minor triad rooted on f (root, third, fifth, octave;
           the root always sounds), each with harmonics at 1/h^2 amplitude up to Nyquist.
- "chirp": a logarithmic sweep from f to a second frequency.

f is an equal-tempered pitch between 110 Hz (A2) and 880 Hz (A5) unless `frequency` is
given: then a sine is exactly that frequency, a chord is rooted on it and a chirp starts
there and sweeps an octave (up when that stays below Nyquist, else down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.data.registry import SPLITS, DataKind, check_split, register_kind
from core.data.windows import WindowDataset, audio_windows, check_audio_model
from core.errors import ConfigError
from core.validation import check_int, is_number, need

KINDS: tuple[str, ...] = ("sine", "chord", "chirp")
LOW_HZ, HIGH_HZ = 110.0, 880.0  # the drawn musical range, A2 .. A5
MIN_SAMPLE_RATE = 2000  # keeps every drawn frequency below Nyquist


def _check_args(sample_rate: int, seconds: float, frequency: float | None) -> int:
    """Validate the shared arguments; returns T, the clip length in samples."""
    check_int("sample_rate", sample_rate, MIN_SAMPLE_RATE)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ConfigError(f"seconds must be a positive number, got {seconds!r}")
    n = round(seconds * sample_rate)
    if n < 1:
        raise ConfigError(f"seconds={seconds!r} is less than one sample at {sample_rate} Hz")
    if frequency is not None and (
        isinstance(frequency, bool)
        or not isinstance(frequency, (int, float))
        or not 0 < frequency < sample_rate / 2
    ):
        raise ConfigError(
            f"frequency must be None or a number in (0, {sample_rate / 2:g}) Hz "
            f"(below Nyquist at sample_rate={sample_rate}), got {frequency!r}"
        )
    return n


def _pitch(rng: np.random.Generator) -> float:
    """An equal-tempered pitch in [LOW_HZ, HIGH_HZ]: A4 = 440 Hz times 2^(k/12)."""
    return 440.0 * 2.0 ** (rng.integers(-24, 13) / 12)


def _envelope(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """(T,) linear attack then exponential decay; nonzero from the first sample."""
    attack = max(1, round(rng.uniform(0.01, 0.1) * sample_rate))
    tau = rng.uniform(0.3, 1.5) * n  # decay time constant, in samples
    i = np.arange(n)
    rise = np.minimum((i + 1) / attack, 1.0)
    return rise * np.exp(-np.maximum(i - attack, 0) / tau)


def _chord(rng: np.random.Generator, t: np.ndarray, root: float, nyquist: float) -> np.ndarray:
    third = 4 if rng.random() < 0.5 else 3  # major or minor
    others = rng.permutation([third, 7, 12])[: rng.integers(1, 4)]
    x = np.zeros_like(t)
    for semitones in (0, *others):
        f = root * 2.0 ** (semitones / 12)
        phase = rng.uniform(0, 2 * np.pi)
        for h in range(1, int(nyquist // f) + 1):
            x += np.sin(2 * np.pi * h * f * t + h * phase) / h**2
    return x


def _chirp(rng: np.random.Generator, t: np.ndarray, duration: float, f0: float | None, nyquist: float) -> np.ndarray:
    if f0 is None:
        f0, f1 = np.exp(rng.uniform(np.log(LOW_HZ), np.log(HIGH_HZ), size=2))
    else:
        f1 = f0 * 2.0 if rng.random() < 0.5 and f0 * 2.0 < nyquist else f0 / 2.0
    k = np.log(f1 / f0) / duration  # instantaneous frequency f0 * exp(k t): f0 at 0, f1 at the end
    return np.sin(2 * np.pi * f0 * np.expm1(k * t) / k + rng.uniform(0, 2 * np.pi))


def tone_clip(
    rng: np.random.Generator,
    sample_rate: int,
    seconds: float,
    kind: str,
    frequency: float | None = None,
) -> np.ndarray:
    """One synthetic clip: float32 (T,), T = round(seconds * sample_rate), peak in [0.3, 0.9].

    `kind` is "sine", "chord" or "chirp" (see the module docstring); `frequency` fixes
    the sine's frequency, the chord's root or the chirp's start. Every random choice is
    drawn from `rng`. Raises ConfigError naming a bad argument.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    n = _check_args(sample_rate, seconds, frequency)
    t = np.arange(n) / sample_rate
    nyquist = sample_rate / 2
    if kind == "sine":
        f = _pitch(rng) if frequency is None else frequency
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    elif kind == "chord":
        x = _chord(rng, t, _pitch(rng) if frequency is None else frequency, nyquist)
    else:
        x = _chirp(rng, t, n / sample_rate, frequency, nyquist)
    x = x * _envelope(rng, n, sample_rate)
    x *= rng.uniform(0.3, 0.9) / np.abs(x).max()
    return x.astype(np.float32)


def tones(
    seed: int,
    n_clips: int,
    sample_rate: int,
    seconds: float,
    kinds: Sequence[str] = KINDS,
    frequency: float | None = None,
) -> list[np.ndarray]:
    """`n_clips` clips, each float32 (T,), cycling through `kinds` in order.

    Clip i is drawn from its own generator seeded with (seed, i), so the list is a
    function of `seed` alone and a longer list extends a shorter one. Raises
    ConfigError naming a bad argument.
    """
    check_int("seed", seed, 0)
    check_int("n_clips", n_clips, 1)
    if isinstance(kinds, str) or not kinds or any(k not in KINDS for k in kinds):
        raise ConfigError(f"kinds must be a non-empty list drawn from {KINDS}, got {kinds!r}")
    _check_args(sample_rate, seconds, frequency)
    return [
        tone_clip(np.random.default_rng([seed, i]), sample_rate, seconds, kinds[i % len(kinds)], frequency)
        for i in range(n_clips)
    ]


@register_kind("tones")
@dataclass
class ToneData(DataKind):
    """Synthetic, seeded tones (sines, chords, chirps) at the model's sample rate, cut into windows."""

    targets: int = 1024  # T: scored positions per window, and the stride between windows
    clips: int = 64  # clips in the train split; valid and test get max(4, clips // 8)
    seconds: float = 2.0  # length of each clip
    frequency: float | None = None  # a fixed frequency (e.g. 500.0 with kinds=["sine"]: a pure tone)
    kinds: list[str] = field(default_factory=lambda: list(KINDS))  # drawn from "sine", "chord", "chirp"
    seed: int = 0  # which clips, and the random window offsets

    def __post_init__(self) -> None:
        check_int("targets", self.targets, 1)
        check_int("clips", self.clips, 1)
        need(is_number(self.seconds) and self.seconds > 0, f"seconds must be a positive number, got {self.seconds!r}")
        need(self.frequency is None or (is_number(self.frequency) and self.frequency > 0),
             f"frequency must be None or a positive number of Hz, got {self.frequency!r}")
        need(not isinstance(self.kinds, str) and len(self.kinds) >= 1 and all(k in KINDS for k in self.kinds),
             f"kinds must be a non-empty list drawn from {KINDS}, got {self.kinds!r}")
        self.kinds = list(self.kinds)
        check_int("seed", self.seed, 0)

    def build(self, split: str, model_config) -> WindowDataset:
        """The windows of `split`: its clips made at the model's rate, tokenised by its codec."""
        check_split(split)
        n_clips = self.clips if split == "train" else max(4, self.clips // 8)
        # (seed, split) -> 3 * seed + split index is one-to-one, so no two splits of any seeds share clips.
        seed = len(SPLITS) * self.seed + SPLITS.index(split)
        check_audio_model(model_config)
        signals = tones(seed, n_clips, model_config.sample_rate, self.seconds, self.kinds, self.frequency)
        return audio_windows(signals, split, model_config, self.targets, self.seed)

    def footprint(self, model_config) -> tuple[int, str] | None:
        """The train and valid clips' samples, float32 signals and int64 tokens: 12 bytes each."""
        rate = getattr(model_config, "sample_rate", 0)
        if not rate:
            return None  # not an audio model: build() says so
        clips = self.clips + max(4, self.clips // 8)
        per_clip = self.seconds * rate  # as build() rounds it, unless too large for any bound
        samples = clips * (round(per_clip) if per_clip < 2**53 else per_clip)
        return int(min(12 * samples, 2**62)), (
            f"data.clips x data.seconds x model.sample_rate = {clips:,} clips (train and valid) "
            f"x {self.seconds:g} s x {rate:,} Hz = {samples:,.0f} samples")
