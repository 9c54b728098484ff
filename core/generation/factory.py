"""The top of the generation package: pick a stepper for a model and drive it in chunks.

    for chunk in generate(model, n, prime=..., temperature=..., seed=...):   # LongTensor (B, <= chunk_size)
        ...

`make_stepper` looks the model's family up in the stepper registry (core.generation.stepper),
so this loop never names a family or a stepper; importing this module registers the steppers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from core.conditioning import Cond
from core.generation import (  # noqa: F401  (register their steppers)
    cached,
    cuda_graph,
    fused,
    naive,
    pixelcnn_cached,
    pixelcnn_fused,
    pixelcnn_rows,
    recurrent,
)
from core.generation.sampling import check_sampling_args
from core.generation.stepper import STEPPERS, model_device

METHODS = tuple(dict.fromkeys(method for family in STEPPERS.values() for method in family))  # every registered method


def family_steppers(model: torch.nn.Module) -> dict[str, type]:
    """The registered steppers of the model's family, by method name; ValueError if it has none."""
    family = getattr(model, "model_type", type(model).__name__)
    if family not in STEPPERS:
        raise ValueError(f"no stepper generates from {family!r} models; families with one: {sorted(STEPPERS)}")
    return STEPPERS[family]


def default_method(model: torch.nn.Module) -> str:
    """The fastest usable method for this model (highest `rank`). For a WaveNet: on CUDA the cached
    step replayed from a CUDA graph; on the CPU the fused C kernel for a float32 model where it builds
    (bench/generation.py: over 20x the cached path at batch 1, about 8x at batch 16), with bfloat16
    weights ("fused-bf16") where the CPU has AVX-512 BF16; else the PyTorch cached path (MPS, other
    dtypes, no C compiler or no AVX2). "fused-int8" is never the default: it costs NLL (docs/internals.md).
    A PixelCNN likewise: its fused kernel (float32) on the CPU (bench/digits.py: about 25x the
    row-by-row path for 16 digits), else its cached path."""
    usable = [(cls.rank, name) for name, cls in family_steppers(model).items() if cls.unusable(model) is None]
    return max(usable)[1]


def make_stepper(method: str, model: torch.nn.Module, batch: int, cond: Cond | None = None,
                 seed: int | None = None):
    """A stepper for `method` (a registered method of the model's family, or "auto" = default_method)."""
    steppers = family_steppers(model)
    if method == "auto":
        method = default_method(model)
    if method not in steppers:
        raise ValueError(f"method must be one of {tuple(steppers)} or 'auto' for a {model.model_type} model, "
                         f"got {method!r}")
    reason = steppers[method].unusable(model)
    if reason is not None:
        raise ValueError(reason)
    return steppers[method](model, batch, cond, seed)


def generate(
    model: torch.nn.Module,
    n: int,
    *,
    prime: torch.Tensor | None = None,
    cond: Cond | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    observed: tuple[torch.Tensor, torch.Tensor] | None = None,
    batch: int = 1,
    seed: int | None = None,
    method: str = "auto",
    chunk_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[torch.Tensor]:
    """Sample n tokens after an optional prime; yields LongTensor chunks (B, <= chunk_size).

    prime:    (P,) or (B, P) known tokens; the output does not repeat them.
    cond:     Cond with classes (B,) or (1,) and/or local (B or 1, C_local, >= (P+n)/hop frames).
    observed: (mask, values), each (n,) or (B, n): where mask is True the token is forced to
              the value instead of sampled (infill); logits still condition on it.
    temperature 0 is greedy; seed makes a run bit-reproducible; progress(done, n) per chunk.
    method: a registered method of the model's family (WaveNet: "naive", "cached", "fused",
              "fused-bf16", "fused-int8", "graph" on CUDA; PixelCNN: "rows", "cached", "fused"),
              or "auto" (`default_method`).
    """
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    check_sampling_args(temperature, top_k)
    dev = model_device(model)
    prime = _batched(prime, batch, "prime", dev) if prime is not None else None
    if prime is not None and prime.shape[1] == 0:
        prime = None
    if observed is not None:
        mask = _batched(observed[0], batch, "observed mask", dev).bool()
        values = _batched(observed[1], batch, "observed values", dev)
        if mask.shape[1] != n or values.shape[1] != n:
            raise ValueError(f"observed mask and values need n={n} columns, got {mask.shape[1]} and {values.shape[1]}")
    cond = _batched_cond(cond, batch)
    stepper = make_stepper(method, model, batch, cond, seed)
    if prime is not None:
        with torch.inference_mode():
            stepper.prime(prime, logits=False)
    done = 0
    while done < n:
        m = min(chunk_size, n - done)
        # Grad mode is thread-local: enter it per chunk, never across a yield.
        with torch.inference_mode():
            obs = (mask[:, done : done + m], values[:, done : done + m]) if observed is not None else None
            chunk = stepper.sample(m, temperature, top_k, obs)
        done += m
        if progress is not None:
            progress(done, n)
        yield chunk.clone()


def generate_all(model: torch.nn.Module, n: int, **kwargs) -> torch.Tensor:
    """`generate` collected into one LongTensor (B, n)."""
    chunks = list(generate(model, n, **kwargs))
    batch = kwargs.get("batch", 1)
    return torch.cat(chunks, dim=1) if chunks else torch.zeros(batch, 0, dtype=torch.long)



def _batched(x, batch: int, name: str, device) -> torch.Tensor:
    """(T,) or (1, T) or (B, T) -> (B, T) on device."""
    x = torch.as_tensor(x, device=device)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.shape[0] not in (1, batch):
        raise ValueError(f"{name} must be (T,), (1, T) or (batch={batch}, T), got {tuple(x.shape)}")
    return x.expand(batch, -1).contiguous()


def _batched_cond(cond: Cond | None, batch: int) -> Cond | None:
    if cond is None:
        return None
    classes, local = cond.classes, cond.local
    if classes is not None:
        classes = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
        if classes.shape[0] not in (1, batch):
            raise ValueError(f"Cond.classes must have 1 or batch={batch} entries, got {classes.shape[0]}")
        classes = classes.expand(batch).contiguous()
    if local is not None:
        if local.dim() == 2:
            local = local.unsqueeze(0)
        if local.shape[0] not in (1, batch):
            raise ValueError(f"Cond.local must have batch 1 or {batch}, got {local.shape[0]}")
        local = local.expand(batch, -1, -1).contiguous()
    return Cond(classes=classes, local=local)
