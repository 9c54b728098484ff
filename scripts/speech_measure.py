"""Does an audio model continue speech as speech? Voicing, pitch, spectral envelope and level of its continuations.

    python scripts/speech_measure.py --checkpoints runs/speech16k/best checkpoints/melodies-wavenet \
        --wavs data/speech16k/test [--clips 16] [--prime-seconds 1] [--seconds 2] [--temperature 0.85]
    python scripts/speech_measure.py --checkpoints ... --wavs assets/audio/spoken.wav   (one clip: the page's example)

Each clip (the first --clips WAVs of --wavs, sorted; in the speech corpus the test voices are never
heard in training) is read at ANALYSIS_RATE and cut where it has been voiced for VOICED_RUN frames,
at least --prime-seconds in (`cut_to_voiced`). Every model continues the same primer for --seconds
the way the Audio page does (the page's default temperature for that model, trailing silence trimmed,
level matched to the model's training loudness), at its own sample rate; the continuation is resampled
back to ANALYSIS_RATE and measured against the primer, beside the clip's real continuation (what the
speaker said next, up to --seconds: less where the clip ends sooner) as a reference:

- frames (40 ms, hop 10 ms): "silent" (RMS under SILENT_RMS), "voiced" (normalised autocorrelation
  over VOICED_PEAK at a lag of one period, F0_MIN..F0_MAX Hz; that lag gives f0) or "unvoiced";
- voiced share and voicing changes per second (speech alternates voiced and unvoiced sound a few
  times a second; a stuck tone is voiced throughout, noise never);
- f0: the continuation's median f0 over the primer's, in semitones, and the share of its voiced
  frames within the primer's f0 range widened by F0_MARGIN semitones;
- envelope: Euclidean distance between mean MFCCs (1..12, mel band 60..3800 Hz, which an 8 kHz
  model can reach too) of non-silent frames of the continuation and of the primer, and of the
  continuation and each other model's continuation;
- level: RMS of the continuation over RMS of the primer.

A continuation is speech-like (`speech_like`) when its voicing changes at least MIN_CHANGES_PER_S
times a second with a voiced share in [0.15, 0.9], its median f0 is within F0_MARGIN semitones of
the primer's, and its level ratio is within [1/2, 2]. The last line printed is one JSON object with,
per model side by side, the medians of the measures and the share of clips that are speech-like.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soxr
from scipy.fft import dct, rfft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import read_audio  # noqa: E402
from core.checkpoints import load_checkpoint  # noqa: E402
from core.continuation import DEFAULT_TEMPERATURE, continue_audio, suggested_temperature  # noqa: E402
from core.pitch import FRAME_S, HOP_S, SILENT_RMS, frames, voicing  # noqa: E402
from core.primer import loudness_of, prepare_primer  # noqa: E402

ANALYSIS_RATE = 16000
VOICED_RUN = 3  # a primer ends with this many voiced frames
F0_MARGIN = 4.0  # semitones
MIN_CHANGES_PER_S = 1.5
MEL_BAND = (60.0, 3800.0)
N_MELS, N_MFCC = 26, 12


def mel_filters(sr: int, n_fft: int, band: tuple[float, float] = MEL_BAND, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters equally spaced on the mel scale over `band` Hz."""
    mel = np.linspace(*(2595 * np.log10(1 + np.array(band) / 700)), n_mels + 2)
    edges = 700 * (10 ** (mel / 2595) - 1)
    hz = np.arange(n_fft // 2 + 1) * sr / n_fft
    rising = (hz[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - hz[None]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0.0, np.minimum(rising, falling))


def mean_mfcc(x: np.ndarray, sr: int) -> np.ndarray:
    """Mean MFCCs 1..N_MFCC (N_MFCC,) over the non-silent frames of x (T,); zeros if none is."""
    fr = frames(x, sr)
    loud = fr[np.sqrt((fr**2).mean(axis=1)) >= SILENT_RMS] if len(fr) else fr
    if len(loud) == 0:
        return np.zeros(N_MFCC)
    n_fft = 1 << (fr.shape[1] - 1).bit_length()
    power = np.abs(rfft(loud * np.hanning(fr.shape[1]), n_fft, axis=1)) ** 2
    logmel = np.log(power @ mel_filters(sr, n_fft).T + 1e-10)
    return dct(logmel, type=2, norm="ortho", axis=1)[:, 1 : N_MFCC + 1].mean(axis=0)


def envelope_distance(a: np.ndarray, b: np.ndarray, sr: int) -> float:
    """Distance between the spectral envelopes of a (T,) and b (T',): Euclidean, between mean MFCCs."""
    return float(np.linalg.norm(mean_mfcc(a, sr) - mean_mfcc(b, sr)))


def level_ratio(continuation: np.ndarray, primer: np.ndarray) -> float:
    """RMS of `continuation` over RMS of `primer` (inf if the primer is silent)."""
    rms = [float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) for y in (continuation, primer)]
    return rms[0] / rms[1] if rms[1] > 0 else float("inf")


def cut_to_voiced(audio: np.ndarray, sr: int, prime_seconds: float) -> int | None:
    """The first sample index t >= prime_seconds * sr at which `audio` has been voiced for VOICED_RUN frames
    (t is the end of the last of them); None if there is none."""
    labels, _ = voicing(audio, sr)
    n, hop = round(FRAME_S * sr), round(HOP_S * sr)
    voiced = labels == "voiced"
    for i in range(VOICED_RUN - 1, len(labels)):
        end = i * hop + n
        if end >= prime_seconds * sr and voiced[i - VOICED_RUN + 1 : i + 1].all():
            return end
    return None


def describe(continuation: np.ndarray, primer: np.ndarray, sr: int) -> dict[str, float]:
    """The measures of `continuation` against `primer` (both (T,) at sr), as in the module docstring."""
    labels, f0 = voicing(continuation, sr)
    _, primer_f0 = voicing(primer, sr)
    voiced = labels == "voiced"
    seconds = max(len(continuation) / sr, 1e-9)
    primer_voiced = primer_f0[primer_f0 > 0]
    row = {"voiced_share": float(voiced.mean()) if len(voiced) else 0.0,
           "silent_share": float((labels == "silent").mean()) if len(labels) else 1.0,
           "voicing_changes_per_s": float(np.count_nonzero(np.diff(voiced.astype(int)))) / seconds,
           "f0_semitones_from_primer": float("nan"), "f0_in_primer_range": 0.0,
           "envelope_to_primer": envelope_distance(continuation, primer, sr),
           "level_ratio": level_ratio(continuation, primer)}
    if voiced.any() and len(primer_voiced):
        row["f0_semitones_from_primer"] = float(12 * np.log2(np.median(f0[voiced]) / np.median(primer_voiced)))
        low, high = np.percentile(primer_voiced, [5, 95]) * 2.0 ** (np.array([-F0_MARGIN, F0_MARGIN]) / 12)
        row["f0_in_primer_range"] = float(np.mean((f0[voiced] >= low) & (f0[voiced] <= high)))
    return row


def speech_like(row: dict[str, float]) -> bool:
    """Voiced and unvoiced alternate, f0 near the primer's, level within 2x (thresholds in the module docstring)."""
    return bool(row["voicing_changes_per_s"] >= MIN_CHANGES_PER_S and 0.15 <= row["voiced_share"] <= 0.9
                and abs(row["f0_semitones_from_primer"]) <= F0_MARGIN and 0.5 <= row["level_ratio"] <= 2.0)


def continuation_of(model, primer: np.ndarray, seconds: float, temperature: float, seed: int) -> np.ndarray:
    """`model`'s continuation of `primer` (P,) at ANALYSIS_RATE, made as the Audio page makes it, at ANALYSIS_RATE."""
    rate = model.config.sample_rate
    heard = soxr.resample(primer, ANALYSIS_RATE, rate, "HQ") if rate != ANALYSIS_RATE else primer
    prepared = prepare_primer(heard.astype(np.float32), rate, len(heard) / rate, trim=True, match_level=True,
                              target=loudness_of(model.config))
    out = np.concatenate(list(continue_audio(model, prepared.audio, seconds, temperature=temperature, seed=seed,
                                             gain=prepared.gain)), axis=1)[0]
    return soxr.resample(out, rate, ANALYSIS_RATE, "HQ") if rate != ANALYSIS_RATE else out


def _median(values: list[float]) -> float | None:
    """The median of the finite `values`, rounded; None (JSON null) if there are none."""
    finite = [v for v in values if np.isfinite(v)]
    return round(float(np.median(finite)), 4) if finite else None


def _json(value):
    """A row's value for JSON: floats rounded, NaN and infinity as None."""
    if isinstance(value, float):
        return round(value, 4) if np.isfinite(value) else None
    return value


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", nargs="+", required=True, help="audio model checkpoints, compared side by side")
    p.add_argument("--wavs", required=True, help="folder of held-out speech WAVs to take primers from, or one WAV")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--prime-seconds", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--temperature", type=float, default=None,
                   help="default: each model at the Audio page's default for it (its config's extra.temperature, "
                        f"else {DEFAULT_TEMPERATURE})")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    models = {path: load_checkpoint(path) for path in args.checkpoints}
    temperatures = {path: args.temperature if args.temperature is not None else
                    suggested_temperature(m.config.extra) for path, m in models.items()}
    wavs = Path(args.wavs)
    files = [wavs] if wavs.is_file() else sorted(wavs.glob("*.wav"))
    if not files:
        p.error(f"no .wav files in {args.wavs}")
    rows: dict[str, list[dict]] = {path: [] for path in [*models, "real continuation"]}
    used = 0
    for path in files:
        if used == args.clips:
            break
        audio = read_audio(path, ANALYSIS_RATE)
        cut = cut_to_voiced(audio, ANALYSIS_RATE, args.prime_seconds)
        if cut is None:
            continue
        primer, n = audio[cut - round(args.prime_seconds * ANALYSIS_RATE) : cut], round(args.seconds * ANALYSIS_RATE)
        outs = {name: continuation_of(m, primer, args.seconds, temperatures[name], args.seed + used)[:n]
                for name, m in models.items()}
        outs["real continuation"] = audio[cut : cut + n]
        for name, out in outs.items():
            row = {"file": path.name, **describe(out, primer, ANALYSIS_RATE)}
            row.update({f"envelope_to {other}": envelope_distance(out, outs[other], ANALYSIS_RATE)
                        for other in models if other != name})
            row["speech_like"] = speech_like(row)
            rows[name].append(row)
            print(json.dumps({"model": name, **{k: _json(v) for k, v in row.items()}}), file=sys.stderr)
        used += 1
    if used == 0:
        p.error(f"no clip in {args.wavs} is voiced after {args.prime_seconds} s")
    report = {"wavs": args.wavs, "clips": used, "seconds": args.seconds, "temperature": temperatures,
              "models": {name: {"speech_like_share": round(float(np.mean([r["speech_like"] for r in rs])), 3),
                                "median": {k: _median([r[k] for r in rs]) for k in rs[0]
                                           if k not in ("file", "speech_like")}}
                         for name, rs in rows.items()}}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
