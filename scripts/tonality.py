"""Does an audio WaveNet continue a recording tonally? Spectral flatness of its continuations.

    python scripts/tonality.py --checkpoint checkpoints/chorales-wavenet --wavs data/chorales/test \
        [--clips 8] [--prime-seconds 1] [--seconds 3] [--temperatures 0.8 0.9 1.0]

Each clip primes the model with --prime-seconds taken from the middle of a WAV; the model
continues for --seconds. Spectral flatness (geometric over arithmetic mean of the Welch power
spectrum, 50 Hz..sr/2) is 1 for white noise and near 0 for a few sharp harmonics. It is
measured on the primer, on the continuation's first second and on its last second (do the
notes survive, or fade into noise?), and on white noise as a reference. The last line printed
is one JSON object with the medians per temperature.
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
        row = {"file": path.name, "primer": flatness(heard, sr)}
        for t in args.temperatures:
            out = np.concatenate(list(continue_audio(model, primer, args.seconds, temperature=t, seed=args.seed + i)),
                                 axis=1)[0]
            row[f"T={t:g} first s"] = flatness(out[:sr], sr)
            row[f"T={t:g} last s"] = flatness(out[-sr:], sr)
            row[f"T={t:g} rms"] = float(np.sqrt(np.mean(out**2)))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), file=sys.stderr)
        rows.append(row)
    noise = flatness(np.random.default_rng(0).uniform(-0.5, 0.5, sr * 3).astype(np.float32), sr)
    keys = [k for k in rows[0] if k != "file"]
    report = {"checkpoint": args.checkpoint, "clips": len(rows), "white_noise": round(noise, 4),
              "median": {k: round(float(np.median([r[k] for r in rows])), 4) for k in keys}}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
