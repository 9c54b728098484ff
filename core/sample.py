"""The sampling CLI: continue WAV files, or sample unconditionally.

    python -m core.sample --checkpoint DIR --temperature 0.9 --seconds 2 --out DIR a.wav b.wav

Each output WAV starts with the conditioning fragment of its input (the last --prime-seconds
of the file before its trailing silence, as the model heard it: resampled and quantised),
followed by the continuation. The model hears the fragment level matched to the loudness it was
trained at, and the output is scaled back to the file's level (core.primer; --no-trim and
--no-match-level turn these off). Without input files, --count unconditional samples are written.

Every input file is tried: one that cannot be read is reported and skipped, and the exit status
is 2 at the end if any failed.

A sequence latent-variable model (vrnn, srnn) is sampled the FIVO seed's way instead
(core.sequence_samples): --prefix-steps frames of --sequences held-out sequences, --count
continuations of --steps frames each, written as samples.npz, MIDI and WAV.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.audio import read_audio, write_wav
from core.checkpoints import load_checkpoint
from core.continuation import check_audio_model, continue_audio, heard
from core.devices import pick_device
from core.errors import StudioError
from core.generation import METHODS, default_method
from core.generation.factory import family_steppers
from core.primer import Loudness, Primer, loudness_of, prepare_primer, read_seconds
from core.sequence_samples import sample_sequences


def sample_file(model, primer: Primer | None, args, label: str, seed: int | None) -> np.ndarray:
    """Primer (as the model heard it, at its own level) + continuation, float32 (T,), with a tqdm bar."""
    sr = model.config.sample_rate
    audio, gain = (primer.audio, primer.gain) if primer is not None else (None, 1.0)
    with tqdm(total=int(round(args.seconds * sr)), desc=label, unit="sample", unit_scale=True,
              disable=args.no_progress) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        chunks = list(continue_audio(model, audio, args.seconds, temperature=args.temperature, top_k=args.top_k,
                                     seed=seed, classes=args.class_id, method=args.method, progress=progress,
                                     gain=gain))
    return np.concatenate([heard(model, audio, gain)] + [c[0] for c in chunks])


def read_primer(path: Path, sample_rate: int, args, target: Loudness) -> Primer:
    """The primer of one input file (only its end is decoded), level matched to `target`; its notes go to stderr."""
    end = read_audio(path, sample_rate, last_seconds=read_seconds(args.prime_seconds, args.trim))
    primer = prepare_primer(end, sample_rate, args.prime_seconds, trim=args.trim, match_level=args.match_level,
                            target=target)
    for note in primer.notes:
        print(f"{path}: {note}", file=sys.stderr)
    return primer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("wavs", nargs="*", help="audio files to continue (WAV, FLAC, OGG; any rate or channels)")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--out", default="samples", help="output folder (default: ./samples)")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds to generate (default 2)")
    p.add_argument("--prime-seconds", type=float, default=1.0,
                   help="how many of the input's last seconds prime the model (default 1)")
    p.add_argument("--no-trim", dest="trim", action="store_false",
                   help="prime with the very end of each input, trailing silence included")
    p.add_argument("--no-match-level", dest="match_level", action="store_false",
                   help="prime with the input at its own level, not raised to the loudness the model was trained at")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; higher = more random (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely levels")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    p.add_argument("--class", dest="class_id", type=int, default=None,
                   help="class id for class-conditional models (a pitch-conditioned one takes its primer's register "
                        "when none is given)")
    p.add_argument("--count", type=int, default=1, help="unconditional samples to write when no WAV is given")
    p.add_argument("--method", default="auto", choices=["auto", *METHODS],
                   help="generation path: auto (CUDA graph on a GPU; on a CPU the fused C kernel where it builds, "
                        "with bfloat16 weights where the CPU has AVX-512 BF16; else cached); fused-int8 is faster "
                        "still but costs up to 0.04 bits per sample (docs/internals.md)")
    p.add_argument("--prefix-steps", type=int, default=25, help="sequence models: frames to condition on (25)")
    p.add_argument("--steps", type=int, default=50, help="sequence models: frames to sample after them (50)")
    p.add_argument("--sequences", type=int, default=4, help="sequence models: held-out sequences to continue (4)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.prime_seconds <= 0:
            raise StudioError(f"--prime-seconds must be > 0, got {args.prime_seconds}")
        model = load_checkpoint(args.checkpoint, pick_device(args.device))
        if hasattr(model, "prior_step"):  # a sequence latent-variable model
            for path in sample_sequences(model, args.checkpoint, args.out, prefix_steps=args.prefix_steps,
                                         steps=args.steps, count=args.count, sequences=args.sequences,
                                         seed=args.seed):
                print(path)
            return 0
        check_audio_model(model)
        method = default_method(model) if args.method == "auto" else args.method
        steppers = family_steppers(model)
        reason = steppers[method].unusable(model) if method in steppers else f"choose one of {sorted(steppers)}"
        if reason is not None:
            raise StudioError(f"--method {method} cannot run this model here: {reason}")
        print(f"generating with the {method} method", file=sys.stderr)
        args.method = method
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sr = model.config.sample_rate
    out = Path(args.out)
    jobs = [(Path(w).stem + "_continued.wav", Path(w)) for w in args.wavs]
    jobs = jobs or [(f"sample_{i:03d}.wav", None) for i in range(args.count)]
    failed = []
    for i, (name, wav) in enumerate(jobs):
        try:
            primer = read_primer(wav, sr, args, loudness_of(model.config)) if wav is not None else None
            seed = None if args.seed is None else args.seed + i
            audio = sample_file(model, primer, args, name, seed)
            write_wav(out / name, audio, sr)
            print(out / name)
        except StudioError as e:
            print(f"error: {wav or name}: {e}", file=sys.stderr)
            failed.append(str(wav or name))
    if failed:
        print(f"error: {len(failed)} of {len(jobs)} failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
