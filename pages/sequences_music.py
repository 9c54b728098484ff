"""The Music tab: continue a test pianoroll with a VRNN or SRNN, hear it, and read the per-step bound of the truth.

    music_take(store, model, data, index, prefix, steps, count, seed)   MusicTake: the prefix, the true
                                                                        continuation, N sampled ones, and the
                                                                        FIVO bound of the true sequence per step
    sample_pianoroll(store, ...)                                        the handler: figures, audio, MIDI files
    bound_per_step(log_weights, resampled)                              FIVO's log p-hat, split into steps

The per-step bound comes from the SMC trace's log-weights: after step t the filter's running
estimate is log p̂(x_1..t) = (the log mean weights banked at each earlier resampling) + (the log
mean of the weights since the last one), and step t's share is its growth over step t - 1. The
shares sum to the FIVO bound of the whole sequence; the continuation's sum, log p̂(x_1..T) -
log p̂(x_1..P), estimates log p(continuation | prefix).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from core.audio import write_wav
from core.errors import StudioError
from core.inference.bounds import estimate
from core.latent_generation import continue_sequences
from core.model_store import ModelStore
from core.pianoroll_audio import pianoroll_to_audio, pianoroll_to_midi
from pages.checks import seed_or_none, whole_in
from pages.sequences_models import UNTRAINED_NAME, held_out_rolls, music_model, seeded, trained_on
from pages.sequences_pianoroll import bound_figure, pianoroll_figure

MAX_PREFIX = 128  # frames of the test sequence the model is conditioned on, at most
MAX_STEPS = 64  # frames to continue, at most
MAX_CONTINUATIONS = 4
BOUND_PARTICLES = 16  # of the FIVO filter that scores the true sequence
BOUND_THRESHOLD = 0.5  # it resamples when the ESS falls to half the particles
SAMPLE_RATE = 16000  # of the played pianorolls: above twice the top key's 4186 Hz
SECONDS_PER_STEP = 0.3  # one frame (a beat) of the pianoroll
KEY_CLIP = 1e-4  # the independent-keys baseline clips the training mean as the models clip their bias


@dataclass
class MusicTake:
    """One request's result; frames are (steps, 88) float32 0/1, the bound and baseline nats per frame."""

    model: str  # the model's name
    data: str
    index: int  # of the test sequence
    prefix: np.ndarray  # (P, 88)
    truth: np.ndarray  # (S, 88): the test sequence's next S frames
    samples: np.ndarray  # (N, S, 88): the model's continuations
    bound: np.ndarray  # (P + S,): FIVO's log p-hat per frame of prefix + truth
    baseline: np.ndarray  # (P + S,): log p of each frame with every key independent at its training frequency
    asked_steps: int  # S was asked; fewer when the sequence ends sooner
    seed: int
    note: str  # what the user should know about the choice of data (or "")


def bound_per_step(log_weights: torch.Tensor, resampled: torch.Tensor) -> torch.Tensor:
    """log_weights (T, N) accumulated since the last resampling, resampled (T,) bool -> (T,) step t's share of
    FIVO's log p-hat: log p̂(x_1..t) - log p̂(x_1..t-1). The shares sum to the filter's log p-hat."""
    mean = torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[1])  # (T,)
    banked = torch.where(resampled, mean, torch.zeros_like(mean))
    running = banked.cumsum(0) - banked + mean  # banked before t, plus the weights since the last resampling
    return torch.diff(running, prepend=running.new_zeros(1))


def independent_keys(frames: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """frames (T, 88) 0/1, mean (88,) -> (T,) log p(frame) with each key an independent Bernoulli at its mean."""
    p = np.clip(np.asarray(mean, dtype=np.float64), KEY_CLIP, 1 - KEY_CLIP)
    frames = np.asarray(frames, dtype=np.float64)
    return frames @ np.log(p) + (1 - frames) @ np.log1p(-p)


def music_take(store: ModelStore, model: str | None, data: str, index: float, prefix: float, steps: float,
               count: float, seed: float | None) -> MusicTake:
    """Continue test sequence `index` of `data` after `prefix` frames, `count` times for `steps` frames (fewer if
    the sequence ends sooner), and score the true sequence with FIVO; StudioError for bad input."""
    net, name = music_model(store, model, data)
    rolls, mean = held_out_rolls(data)
    index = whole_in("test sequence", index, 0, len(rolls) - 1)
    roll = rolls[index]
    p = whole_in("prefix length", prefix, 0, min(MAX_PREFIX, len(roll) - 1))
    asked = whole_in("steps", steps, 1, MAX_STEPS)
    n = whole_in("continuations", count, 1, MAX_CONTINUATIONS)
    seed = seed_or_none(seed)
    seed = int(np.random.default_rng().integers(2**31)) if seed is None else seed
    s = min(asked, len(roll) - p)
    device = next(net.parameters()).device
    x = torch.from_numpy(roll[: p + s]).to(device).unsqueeze(0)  # (1, P + S, 88)
    with torch.no_grad(), seeded(seed):
        result = estimate(net, x, None, "fivo", BOUND_PARTICLES, threshold=BOUND_THRESHOLD, trace=True)
    bound = bound_per_step(result.trace.log_weights[:, 0], result.trace.resampled[:, 0])
    generator = torch.Generator(device=device).manual_seed(seed)
    samples = continue_sequences(net, x[:, :p], n, s, generator)[:, 0]  # (N, S, 88)
    source = trained_on({"train_mean": list(net.config.train_mean)}) if name != UNTRAINED_NAME else data
    note = (f"This model was trained on **{source}**, not {data}: expect a worse bound." if source not in (None, data)
            else "")
    return MusicTake(name, data, index, roll[:p], roll[p : p + s], samples.cpu().numpy(), bound.cpu().numpy(),
                     independent_keys(roll[: p + s], mean), asked, seed, note)


def status_markdown(take: MusicTake) -> str:
    """What was done, and the true continuation's bound against the independent-keys baseline, in nats per frame."""
    p, s = len(take.prefix), len(take.truth)
    shortened = (f" (test sequence {take.index} ends {s} frames after the prefix, so {s} rather than "
                 f"{take.asked_steps})") if s < take.asked_steps else ""
    ours, floor = take.bound[p:].sum(), take.baseline[p:].sum()
    return "\n\n".join(part for part in (
        f"**{take.model}** continued test sequence {take.index} of *{take.data}* after {p} frames, "
        f"{len(take.samples)} time(s) for {s} frames{shortened}; seed {take.seed}.",
        f"The true continuation: **{ours:.2f} nats** ({ours / s:.3f} per frame) by FIVO with {BOUND_PARTICLES} "
        f"particles, against {floor:.2f} nats ({floor / s:.3f} per frame) with every key independent at its "
        f"training frequency. Higher is better; the model beats that baseline where its bar is above the line.",
        take.note) if part)


def sample_pianoroll(store: ModelStore, model: str | None, data: str, index: float, prefix: float, steps: float,
                     count: float, seed: float | None) -> Iterator[tuple]:
    """The Sample handler. Yields once: (pianoroll figure, per-step bound figure, status, the truth's audio,
    MAX_CONTINUATIONS sample audios (None past `count`), MIDI files [truth, sample 1, ...]).

    Audio is a 16-bit WAV of prefix + continuation at SAMPLE_RATE, written (atomically) beside the MIDI
    files: an array would be cached by Gradio under a hash of its content, a file two users sampling the same
    sequence would write at once. A generator, so the files' temporary folder lives until Gradio has copied
    them (which it does atomically)."""
    try:
        take = music_take(store, model, data, index, prefix, steps, count, seed)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    tag = "untrained-" if take.model == UNTRAINED_NAME else ""  # on the samples' files: the truth is no model's
    rolls = {"truth": take.truth, **{f"sample-{i + 1}": c for i, c in enumerate(take.samples)}}
    with tempfile.TemporaryDirectory(prefix="studio-music-") as folder:
        files, sounds = [], {}
        for key, roll in rolls.items():
            whole = np.concatenate([take.prefix, roll])
            path = Path(folder) / f"{'' if key == 'truth' else tag}{take.data}-{take.index}-{key}.mid"
            path.write_bytes(pianoroll_to_midi(whole, SECONDS_PER_STEP))
            files.append(str(path))
            sounds[key] = str(path.with_suffix(".wav"))
            write_wav(sounds[key], pianoroll_to_audio(whole, SAMPLE_RATE, SECONDS_PER_STEP), SAMPLE_RATE)
        slots = [sounds.get(f"sample-{i + 1}") for i in range(MAX_CONTINUATIONS)]
        yield (pianoroll_figure(take.prefix, take.truth, take.samples, _title(take)),
               bound_figure(take.bound, take.baseline, len(take.prefix), _title(take)),
               status_markdown(take), sounds["truth"], *slots, files)


def _title(take: MusicTake) -> str:
    return f"{take.model} · {take.data} test sequence {take.index}"
