"""Does an audio WaveNet continue a recording tonally? Periodicity and flatness of its continuations.

    python scripts/tonality.py --checkpoint checkpoints/chorales-wavenet --wavs data/chorales/test \
        [--clips 8] [--prime-seconds 1] [--seconds 3] [--temperatures 0.8 0.9 1.0]

Each clip primes the model with --prime-seconds taken from the middle of a WAV; the model
continues for --seconds. Measured on the primer, on the continuation's first second and on
its last second (do the notes survive, or fade into noise?), and on white noise as a reference:

- periodicity: the median over 64 ms frames of the largest normalised autocorrelation at a
  lag of one pitch period (60 Hz..1 kHz): near 1 for a sustained note, near 0 for noise;
- flatness: geometric over arithmetic mean of the Welch power spectrum (50 Hz..sr/2): 1 for
  white noise, near 0 for a few sharp harmonics (a stuck tone scores as well as music here,
  which is why periodicity and the pitch check exist);
- same pitch: whether the continuation's first 0.25 s keeps the primer's last pitch (within a
  semitone, octave errors excluded), the share of clips where it does;
- outcome of the last second: "silent" (RMS under 0.01, about -40 dBFS: the melody reached a
  rest), "tonal" (periodicity over 0.7) or "noisy" (anything else), the share of clips of each.

The last line printed is one JSON object with the medians and shares per temperature.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.signal import welch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import read_audio  # noqa: E402
from core.checkpoints import load_checkpoint  # noqa: E402
from core.continuation import continue_audio, dequantise, quantise  # noqa: E402


def flatness(x: np.ndarray, sr: int) -> float:
    """Spectral flatness of x (T,) between 50 Hz and sr/2: 1 = white noise, -> 0 = pure tones."""
    f, p = welch(x, sr, nperseg=2048)
    p = p[f >= 50] + 1e-12
    return float(np.exp(np.mean(np.log(p))) / np.mean(p))


def _frames(x: np.ndarray, sr: int) -> np.ndarray:
    n = int(0.064 * sr)
    return np.stack([x[i : i + n] for i in range(0, len(x) - n + 1, n)]) if len(x) >= n else np.zeros((0, n))


def pitch_frames(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Per 64 ms frame: (largest normalised autocorrelation at lags of 1 ms..16.7 ms, its lag in Hz)."""
    lo, hi = int(sr / 1000), int(sr / 60)
    peaks, f0 = [], []
    for f in _frames(x, sr):
        f = f - f.mean()
        energy = float(f @ f)
        if energy < 1e-8:
            peaks.append(0.0)
            f0.append(0.0)
            continue
        ac = np.correlate(f, f, "full")[len(f) - 1 :]
        norm = ac[lo:hi] / np.sqrt(energy * np.array([f[k:] @ f[k:] for k in range(lo, hi)]) + 1e-12)
        k = int(np.argmax(norm))
        peaks.append(float(norm[k]))
        f0.append(sr / (lo + k))
    return np.array(peaks), np.array(f0)


def periodicity(x: np.ndarray, sr: int) -> float:
    peaks, _ = pitch_frames(x, sr)
    return float(np.median(peaks)) if len(peaks) else 0.0


SILENT_RMS = 0.01
TONAL_PERIODICITY = 0.7


def outcome(x: np.ndarray, sr: int) -> str:
    """"silent", "tonal" or "noisy" for a stretch of audio x (T,) (see the module docstring)."""
    if float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) < SILENT_RMS:
        return "silent"
    return "tonal" if periodicity(x, sr) > TONAL_PERIODICITY else "noisy"


def same_pitch(primer: np.ndarray, continuation: np.ndarray, sr: int) -> bool:
    """The continuation's first 0.25 s is within a semitone of the primer's last 0.25 s pitch."""
    quarter = sr // 4
    _, a = pitch_frames(primer[-quarter:], sr)
    _, b = pitch_frames(continuation[:quarter], sr)
    if not (len(a) and len(b)) or np.median(a) == 0 or np.median(b) == 0:
        return False
    return abs(12 * np.log2(np.median(b) / np.median(a))) < 1


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--wavs", required=True, help="folder of WAVs to take primers from")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--prime-seconds", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.8, 0.9, 1.0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    model = load_checkpoint(args.checkpoint)
    sr = model.config.sample_rate
    files = sorted(Path(args.wavs).glob("*.wav"))[: args.clips]
    if not files:
        p.error(f"no .wav files in {args.wavs}")
    rows = []
    for i, path in enumerate(files):
        audio = read_audio(path, sr)
        mid, n = len(audio) // 2, int(args.prime_seconds * sr)
        primer = audio[max(0, mid - n) : mid]
        heard = dequantise(model, quantise(model, primer))
        row = {"file": path.name, "primer flatness": flatness(heard, sr), "primer periodicity": periodicity(heard, sr)}
        for t in args.temperatures:
            out = np.concatenate(list(continue_audio(model, primer, args.seconds, temperature=t, seed=args.seed + i)),
                                 axis=1)[0]
            row[f"T={t:g} flatness first s"] = flatness(out[:sr], sr)
            row[f"T={t:g} flatness last s"] = flatness(out[-sr:], sr)
            row[f"T={t:g} periodicity first s"] = periodicity(out[:sr], sr)
            row[f"T={t:g} periodicity last s"] = periodicity(out[-sr:], sr)
            row[f"T={t:g} same pitch"] = float(same_pitch(heard, out, sr))
            row[f"T={t:g} last s"] = outcome(out[-sr:], sr)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), file=sys.stderr)
        rows.append(row)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, sr * 3).astype(np.float32)
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    pitch_keys = [k for k in keys if "same pitch" in k]
    outcome_keys = [k for k in rows[0] if isinstance(rows[0][k], str) and k != "file"]
    report = {"checkpoint": args.checkpoint, "clips": len(rows),
              "white_noise": {"flatness": round(flatness(noise, sr), 4),
                              "periodicity": round(periodicity(noise, sr), 4)},
              "median": {k: round(float(np.median([r[k] for r in rows])), 4) for k in keys if k not in pitch_keys},
              "same_pitch_share": {k: round(float(np.mean([r[k] for r in rows])), 3) for k in pitch_keys},
              "last_second_share": {k: {o: round(float(np.mean([r[k] == o for r in rows])), 3)
                                        for o in ("tonal", "silent", "noisy")} for k in outcome_keys}}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
