"""Samples of a sequence latent-variable model (VRNN, SRNN), the way the FIVO seed writes them, and playable.

    python -m core.sample --checkpoint runs/vrnn_jsb_fivo/checkpoints/step_N --prefix-steps 25 --steps 50 \\
        --count 4 --sequences 8 --out samples/

conditions on the first `prefix_steps` frames of the first `sequences` sequences of a split (those
that long) of the checkpoint's own data, draws `count` continuations of `steps` frames each
(core.latent_generation), and writes

    samples.npz        prefixes (P, B, D) and samples (S, B, N, D), the seed's layout (P=25, S=50 there)
    seq{b}_sample{n}.mid / .wav     per sequence and sample: prefix then continuation, as MIDI and as
                                    sines (pianorolls), or as audio (speech frames, Gaussian emissions)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.audio import write_wav
from core.data import build_split
from core.data.speech_frames import unframe
from core.errors import ConfigError
from core.evaluate import find_train_config
from core.latent_generation import continue_sequences
from core.pianoroll_audio import pianoroll_to_audio, pianoroll_to_midi
from core.training import config as train_config

PLAYBACK_RATE = 16000


def sample_sequences(model: torch.nn.Module, checkpoint: str | Path, out: str | Path, *, prefix_steps: int = 25,
                     steps: int = 50, count: int = 4, sequences: int = 4, split: str = "test",
                     seed: int | None = None) -> list[Path]:
    """Write the npz and the per-sample files into `out`; returns their paths. ConfigError for bad sizes."""
    for name, value, low in (("prefix_steps", prefix_steps, 0), ("steps", steps, 1), ("count", count, 1),
                             ("sequences", sequences, 1)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    cfg = train_config.load(find_train_config(Path(checkpoint)))
    data = build_split(cfg.data, split, model.config)
    chosen = [data[i] for i in range(len(data)) if len(data[i]) >= prefix_steps][:sequences]
    if not chosen:
        raise ConfigError(f"no {split} sequence has {prefix_steps} frames to condition on; lower --prefix-steps")
    prefix = torch.stack([s[:prefix_steps] for s in chosen])  # (B, P, D)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    samples = continue_sequences(model, prefix, count, steps, generator)  # (N, B, S, D)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "samples.npz"]
    np.savez(written[0], prefixes=prefix.permute(1, 0, 2).numpy(), samples=samples.permute(2, 1, 0, 3).numpy())
    for b in range(prefix.shape[0]):
        for n in range(count):
            frames = torch.cat([prefix[b], samples[n, b]]).numpy()  # (P + S, D)
            stem = out / f"seq{b}_sample{n}"
            if model.config.emission == "bernoulli":
                stem.with_suffix(".mid").write_bytes(pianoroll_to_midi(frames))
                write_wav(stem.with_suffix(".wav"), pianoroll_to_audio(frames, PLAYBACK_RATE), PLAYBACK_RATE)
                written += [stem.with_suffix(".mid"), stem.with_suffix(".wav")]
            else:
                audio = unframe(frames, model.config.signal_mean, model.config.signal_std)
                write_wav(stem.with_suffix(".wav"), np.clip(audio, -1, 1), model.config.sample_rate)
                written.append(stem.with_suffix(".wav"))
    return written
