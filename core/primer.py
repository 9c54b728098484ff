"""The primer an audio model continues: the clip's end without its trailing silence, at a level it knows.

Clips as people record them (speech, a piano take) end in silence. The last second is then
nothing but silence, the model hears nothing of the clip, and every such clip gets the same
continuation for a seed. And a model trained on audio peaking near full scale does not continue
a clip 40 dB quieter: it hears next to nothing. So, before priming:

- trailing silence is cut: 10 ms frames (FRAME_SECONDS) at the end whose RMS is below
  SILENCE_DBFS are dropped, looking back at most TRIM_SEARCH_SECONDS, and the primer is the
  last `prime_seconds` before them;
- with level matching, the primer is scaled to the loudness its model was trained at (a Loudness: by
  default a TARGET_PEAK_DBFS peak, as the rendered melodies are peak-normalised to 0.9, about -1 dBFS,
  and the synthetic tones peak between 0.3 and 0.9; a model's config may name another in
  `extra["loudness"]`, such as the speech model's -20 dBFS RMS, its corpus's level), by at most
  MAX_GAIN_DB; the continuation is scaled back by the same factor, so the output stays at the clip's
  own level;
- a primer that is silent, or (without level matching) more than QUIET_BELOW_DB under its model's level, gets
  a warning.

    end = read_audio(path, rate, last_seconds=read_seconds(prime_seconds))
    primer = prepare_primer(end, rate, prime_seconds, match_level=True, target=loudness_of(model.config))
    primer.audio * primer.gain        what the model is primed with; primer.notes for the person
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError

SILENCE_DBFS = -60.0  # a 10 ms frame whose RMS is below this is silence
QUIET_BELOW_DB = 29.0  # a primer this many dB under its model's training level is very quiet for it
TARGET_PEAK_DBFS = -1.0  # level matching sets the primer's peak to this, unless its model says otherwise
LOUDNESS_MEASURES = ("peak", "rms")
MAX_GAIN_DB = 40.0  # level matching raises a primer by at most this
TRIM_SEARCH_SECONDS = 10.0  # trailing silence is looked for this far back from the end, at most
FRAME_SECONDS = 0.01


@dataclass(frozen=True)
class Loudness:
    """How loud a model's training audio was: its `measure` ("peak" or "rms") at `dbfs`."""

    measure: str = "peak"
    dbfs: float = TARGET_PEAK_DBFS

    def __post_init__(self) -> None:
        if self.measure not in LOUDNESS_MEASURES:
            raise ConfigError(f"loudness measure must be one of {LOUDNESS_MEASURES}, got {self.measure!r}")
        if isinstance(self.dbfs, bool) or not isinstance(self.dbfs, (int, float)) or not -60 <= self.dbfs <= 0:
            raise ConfigError(f"loudness dbfs must be a number in [-60, 0], got {self.dbfs!r}")

    def of(self, audio: np.ndarray) -> float:
        """`audio`'s level by this measure, in dBFS (-inf for silence or no samples)."""
        return peak_dbfs(audio) if self.measure == "peak" else rms_dbfs(audio)

    def __str__(self) -> str:
        return f"{self.dbfs:g} dBFS {'peak' if self.measure == 'peak' else 'RMS'}"


def loudness_of(model_config) -> Loudness:
    """The loudness a model was trained at: its config's `extra["loudness"]` ({"measure", "dbfs"}), else the
    default peak. ConfigError for one that does not parse."""
    named = (getattr(model_config, "extra", None) or {}).get("loudness")
    if named is None:
        return Loudness()
    if not isinstance(named, dict) or set(named) - {"measure", "dbfs"}:
        raise ConfigError(f"extra.loudness must be {{'measure': 'peak' or 'rms', 'dbfs': number}}, got {named!r}")
    return Loudness(**named)


@dataclass(frozen=True)
class Primer:
    """A prepared primer: what to prime with, how loud to make it, and what the person should know."""

    audio: np.ndarray  # (P,) float32 in [-1, 1], at the clip's own level
    gain: float  # the model is primed with audio * gain; 1.0 without level matching
    trimmed_seconds: float  # trailing silence cut from the end of the clip
    peak_dbfs: float  # the peak of `audio` (-inf when it is all zeros)
    warnings: tuple[str, ...]  # problems the person should fix (silent, very quiet)
    target: Loudness = Loudness()  # what level matching aims at

    @property
    def notes(self) -> tuple[str, ...]:
        """What was done to the clip, then the warnings: one sentence each, for a page or a CLI."""
        done = []
        if self.trimmed_seconds > 0:
            done.append(f"Cut {self.trimmed_seconds:.2f} s of trailing silence (below {SILENCE_DBFS:g} dBFS).")
        if self.gain != 1.0:
            done.append(f"Level matched: primer {20 * math.log10(self.gain):+.1f} dB to {self.target}, the model's "
                        "training level; the output is scaled back to the clip's level.")
        return (*done, *self.warnings)


def read_seconds(prime_seconds: float, trim: bool = True) -> float:
    """How much of a clip's end to read for a primer of `prime_seconds` (room for trailing silence if trimming)."""
    return prime_seconds + (TRIM_SEARCH_SECONDS if trim else 0.0)


def peak_dbfs(audio: np.ndarray) -> float:
    """The largest absolute sample of `audio` in dBFS (0 = full scale); -inf for silence or no samples."""
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def rms_dbfs(audio: np.ndarray) -> float:
    """The RMS of `audio` in dBFS (a full-scale square wave is 0); -inf for silence or no samples."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def trim_trailing_silence(audio: np.ndarray, sample_rate: int, threshold_dbfs: float = SILENCE_DBFS) -> np.ndarray:
    """`audio` (T,) up to the end of its last 10 ms frame whose RMS is at least `threshold_dbfs`.

    Frames are counted back from the end, so the cut falls on the end of a frame; an empty array if
    no frame is that loud.
    """
    frame = max(1, round(FRAME_SECONDS * sample_rate))
    n = len(audio) // frame
    tail = len(audio) - n * frame  # a partial frame at the start is judged with its neighbour
    frames = np.asarray(audio[tail:], dtype=np.float64).reshape(n, frame)
    rms = np.sqrt((frames**2).mean(axis=1)) if n else np.zeros(0)
    loud = np.flatnonzero(rms >= 10 ** (threshold_dbfs / 20))
    if len(loud) == 0:
        return audio[:0]
    return audio[: tail + (loud[-1] + 1) * frame]


def prepare_primer(
    clip_end: np.ndarray,
    sample_rate: int,
    prime_seconds: float,
    *,
    trim: bool = True,
    match_level: bool = False,
    target: Loudness = Loudness(),
) -> Primer:
    """The primer for `clip_end` (T,), float32 at `sample_rate`: its last `prime_seconds`, prepared as above.

    `clip_end` is the end of the clip, `read_seconds(prime_seconds, trim)` long where the clip is
    that long. A clip whose end is all silence is kept as it is (its last `prime_seconds`, not
    level matched) and gets a warning.
    """
    if not (isinstance(prime_seconds, (int, float)) and prime_seconds > 0):
        raise ValueError(f"prime_seconds must be positive, got {prime_seconds!r}")
    keep = max(1, round(prime_seconds * sample_rate))
    clip_end = np.asarray(clip_end, dtype=np.float32)
    sounding = trim_trailing_silence(clip_end, sample_rate) if trim else clip_end
    if len(sounding) == 0:  # all silent: nothing to cut back to
        sounding = clip_end
    trimmed = (len(clip_end) - len(sounding)) / sample_rate
    audio = sounding[-keep:]
    silent = len(trim_trailing_silence(audio, sample_rate)) == 0
    level = peak_dbfs(audio)
    warnings: list[str] = []
    gain = 1.0
    if silent:
        warnings.append(f"The end of the clip is silent (below {SILENCE_DBFS:g} dBFS): the model hears nothing "
                        "of it and continues from silence. Upload a clip with sound near its end.")
    elif match_level:
        # Raised by at most MAX_GAIN_DB, and never so far that its peak would pass full scale.
        gain = 10 ** (min(target.dbfs - target.of(audio), MAX_GAIN_DB, -level) / 20)
        if target.dbfs - target.of(audio) > MAX_GAIN_DB:
            warnings.append(f"The primer is at {target.of(audio):.0f} dBFS {target.measure}: level matching raised "
                            f"it by its limit of {MAX_GAIN_DB:g} dB only, and the model may not hear it well.")
    elif target.of(audio) < target.dbfs - QUIET_BELOW_DB:
        warnings.append(f"The primer is very quiet ({target.of(audio):.0f} dBFS {target.measure}; the model was "
                        f"trained near {target}) and may not be continued: turn on level matching.")
    return Primer(audio=audio, gain=gain, trimmed_seconds=trimmed, peak_dbfs=level, warnings=tuple(warnings),
                  target=target)
