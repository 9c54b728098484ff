"""Continue a waveform with an audio model (WaveNet, wayback RNN): quantise the primer, prime, generate, decode.

Shared by the sampling CLI and the audio page, so both produce the same audio for the same
inputs and seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from core import codecs
from core.conditioning import Cond
from core.errors import ConfigError
from core.generation import generate
from core.generation.stepper import STEPPERS
from core.models.wavenet import WaveNet
from core.pitch import pitch_class

DEFAULT_TEMPERATURE = 0.85  # where a model's config suggests none: the melody model holds its notes here


def generates_audio(model: torch.nn.Module) -> bool:
    """Whether the model generates audio: a family with a stepper, an audio codec and a sample rate."""
    c = getattr(model, "config", None)
    return (getattr(model, "model_type", None) in STEPPERS and getattr(c, "codec", "none") != "none"
            and bool(getattr(c, "sample_rate", 0)))


def check_audio_model(model: torch.nn.Module) -> None:
    """ConfigError unless `generates_audio(model)`."""
    if not generates_audio(model):
        raise ConfigError("this model does not generate audio (it needs an autoregressive audio model, such as a "
                          "WaveNet or a wayback RNN, with an audio codec and sample rate)")


def quantise(model: WaveNet, audio: np.ndarray) -> torch.Tensor:
    """float (T,) in [-1, 1] -> LongTensor (T,) of the model's tokens."""
    c = model.config
    return torch.as_tensor(codecs.encode(np.asarray(audio, dtype=np.float32), c.quantization_levels, c.codec))


def dequantise(model: WaveNet, tokens: torch.Tensor) -> np.ndarray:
    """LongTensor (..., T) -> float32 numpy (..., T) in [-1, 1]."""
    c = model.config
    return codecs.decode(tokens.cpu().numpy(), c.quantization_levels, c.codec).astype(np.float32)


def heard(model: WaveNet, primer: np.ndarray | None, gain: float = 1.0) -> np.ndarray:
    """The primer (P,) as the model heard it, back at the primer's level: float32 (P,), empty for None.

    The model is primed with `primer * gain` quantised; this is that, decoded and divided by `gain`.
    """
    if primer is None:
        return np.zeros(0, np.float32)
    return (dequantise(model, quantise(model, np.asarray(primer) * gain)) / np.float32(gain)).astype(np.float32)


def suggested_temperature(extra: dict | None) -> float:
    """The temperature a model is best sampled at: `extra["temperature"]` of its config (a number in [0, 2]),
    else DEFAULT_TEMPERATURE. ConfigError for a value that is not such a number."""
    value = (extra or {}).get("temperature", DEFAULT_TEMPERATURE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise ConfigError(f"extra.temperature must be a number in [0, 2], got {value!r}")
    return float(value)


def class_for(model: WaveNet, primer: np.ndarray | None, classes: int | None, gain: float = 1.0) -> int | None:
    """The class `model` continues `primer` (T,) with: `classes` if given, else for a pitch-conditioned model
    (config.classes_from "pitch") the pitch register of the primer as the model hears it (`primer * gain`;
    core.pitch.pitch_class; the middle register for no primer). ConfigError if a class-conditional model has
    none."""
    config = model.config
    if classes is None and getattr(config, "classes_from", "") == "pitch":
        heard_primer = np.asarray(primer if primer is not None else np.zeros(0), dtype=np.float32) * gain
        return pitch_class(heard_primer, config.sample_rate)
    n_classes = getattr(config, "n_classes", 0)  # families without class conditioning have none
    if n_classes and classes is None:
        raise ConfigError(f"this model is class-conditional: choose a class in [0, {n_classes})")
    return classes


def continue_audio(
    model: WaveNet,
    primer: np.ndarray | None,
    seconds: float,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    batch: int = 1,
    seed: int | None = None,
    classes: int | None = None,
    method: str = "auto",
    chunk_size: int = 2000,
    progress: Callable[[int, int], None] | None = None,
    gain: float = 1.0,
) -> Iterator[np.ndarray]:
    """Yield float32 chunks (B, n) of the continuation of `primer` (T,) at the model's rate.

    The model is primed with `primer * gain` (level matching, core.primer) and the continuation is
    divided by `gain`, so it comes out at the primer's level. The primer itself is not repeated;
    `heard(model, primer, gain)` is exactly what the model saw, at the same scale.
    """
    check_audio_model(model)
    if not (isinstance(seconds, (int, float)) and seconds > 0):
        raise ConfigError(f"seconds must be > 0, got {seconds!r}")
    if not (isinstance(gain, (int, float)) and gain > 0 and math.isfinite(gain)):
        raise ConfigError(f"gain must be a positive number, got {gain!r}")
    n = int(round(seconds * model.config.sample_rate))
    prime = quantise(model, np.asarray(primer) * gain) if primer is not None and len(primer) else None
    classes = class_for(model, primer, classes, gain)
    cond = Cond(classes=torch.tensor([classes])) if classes is not None else None
    for chunk in generate(model, n, prime=prime, cond=cond, temperature=temperature, top_k=top_k, batch=batch,
                          seed=seed, method=method, chunk_size=chunk_size, progress=progress):
        yield dequantise(model, chunk) / np.float32(gain)
