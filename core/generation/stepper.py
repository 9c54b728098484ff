"""The stepper protocol, at the bottom of the generation package, and the registry of steppers.

A *stepper* draws from one model, one position at a time, keeping every bit of state itself:
the model is never mutated, so one loaded model serves any number of concurrent generators.

    stepper.prime(tokens)                # (B, P) known prefix -> logits (B, Q, P)
    stepper.prime(tokens, logits=False)  # the same state, cheaper -> None
    stepper.step(prev)                   # prev (B,) = the previous token (None at t=0) -> logits (B, Q) of x_t
    stepper.sample(n, temperature, top_k, observed)  # the next n tokens (B, n)

Each model family registers its steppers by method name (`@register_stepper("wavenet",
"cached")`); the factory (`core.generation.factory`) picks one by the model's `model_type`, so
a new family adds a stepper module without the sampling loop naming it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.generation.sampling import check_sampling_args, sample

# model_type -> method -> stepper class, in registration order (the order `default_method` prefers)
STEPPERS: dict[str, dict[str, type]] = {}


def register_stepper(model_type: str, method: str) -> Callable[[type], type]:
    """Class decorator: `cls(model, batch, cond, seed)` generates from `model_type` models as `method`.

    The class declares `rank` (higher = faster) and `unusable(model) -> str | None` (why it cannot run
    this model, or None); `default_method` takes the highest-ranked usable method of the family.
    """

    def deco(cls: type) -> type:
        methods = STEPPERS.setdefault(model_type, {})
        if methods.get(method, cls) is not cls:
            raise ValueError(f"stepper {model_type}/{method} is registered twice")
        methods[method] = cls
        return cls

    return deco


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_prime(stepper, tokens: torch.Tensor) -> None:
    """ValueError unless prime() comes first and tokens are (B, P > 0) for the stepper's batch."""
    if stepper.t != 0:
        raise ValueError("prime() must come before the first step()")
    if tokens.dim() != 2 or tokens.shape[0] != stepper.batch or tokens.shape[1] == 0:
        raise ValueError(f"prime tokens must be (B={stepper.batch}, P>0), got {tuple(tokens.shape)}")


class SamplingLoop:
    """`sample()` for the PyTorch steppers: step, draw with core.generation.sampling, force observed values."""

    def _init_sampling(self, seed: int | None, device: torch.device) -> None:
        self.gen = torch.Generator(device=device)
        if seed is None:
            self.gen.seed()
        else:
            self.gen.manual_seed(seed)
        self.prev: torch.Tensor | None = None  # the last token, input of the next step

    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               observed: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The next n tokens, LongTensor (B, n); observed = (mask (B, n) bool, values (B, n))."""
        check_sampling_args(temperature, top_k)
        out = []
        for i in range(n):
            x = sample(self.step(self.prev), temperature, top_k, self.gen)
            if observed is not None:
                x = torch.where(observed[0][:, i], observed[1][:, i], x)
            out.append(x)
            self.prev = x
        return torch.stack(out, dim=1) if out else torch.zeros(self.batch, 0, dtype=torch.long)

