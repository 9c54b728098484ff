"""Continue a sequence with a VRNN or SRNN: condition on a prefix, then sample from the prior.

    samples = continue_sequences(model, prefix, num_samples=4, steps=50)   # (N, B, steps, D)

Conditioning runs N particles per sequence through the model's proposal over the prefix
(`propose_and_weight`), then draws N of them in proportion to their importance weights (one
multinomial resampling at the end, the IWAE-style posterior approximation; with N = 1 it is the
proposal's single trajectory). Each surviving particle is then continued with its own draws
from the prior and the emission (`prior_step`), all N * B at once, particle-major rows
n * B + b. The model is never changed; randomness comes from `generator` (on the model's device)
or the global RNG.
"""

from __future__ import annotations

import torch

from core.models.sequential import State, tile


@torch.no_grad()
def condition_on_prefix(model, prefix: torch.Tensor, num_particles: int,
                        generator: torch.Generator | None = None) -> tuple[State, torch.Tensor]:
    """Filter prefix (B, P, D) with N particles: -> (state with N * B rows, log weights (N, B)).

    With P = 0 the state is the model's zero state and the weights are 0.
    """
    b, p = prefix.shape[:2]
    state = model.zero_state(num_particles * b)
    log_w = prefix.new_zeros(num_particles * b)
    if p:
        context = tile(model.encode(prefix, torch.full((b,), p, dtype=torch.long, device=prefix.device)),
                       num_particles)
        for t in range(p):
            eps = torch.randn(log_w.shape[0], model.config.latent_size, generator=generator,
                              dtype=prefix.dtype, device=prefix.device)
            state, inc = model.propose_and_weight(state, context, t, eps)
            log_w = log_w + inc
    return state, log_w.view(num_particles, b)


def resample(state: State, log_w: torch.Tensor, generator: torch.Generator | None = None) -> State:
    """Draw N particles per sequence with probability softmax(log_w (N, B)) over N: -> state re-indexed."""
    n, b = log_w.shape
    picks = torch.multinomial(torch.softmax(log_w.T.double(), dim=1), n, replacement=True, generator=generator)
    rows = (picks.T * b + torch.arange(b, device=log_w.device)).reshape(-1)  # (N * B,)
    return {k: v[rows] for k, v in state.items()}


@torch.no_grad()
def continue_sequences(model, prefix: torch.Tensor, num_samples: int, steps: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """prefix (B, P, D) observed frames (P >= 0) -> continuations (N, B, steps, D), N = num_samples.

    Frame s of a continuation follows the prefix's last frame (or the start, if P = 0).
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    b, p, d = prefix.shape
    state, log_w = condition_on_prefix(model, prefix, num_samples, generator)
    if p:
        state = resample(state, log_w, generator)
    state = model.start_sampling(state, prefix)
    inputs = model.centre(prefix[:, -1]).repeat(num_samples, 1) if p else prefix.new_zeros(num_samples * b, d)
    frames = []
    for _ in range(steps):
        state, x = model.prior_step(state, inputs, generator)
        frames.append(x)
        inputs = model.centre(x)
    out = torch.stack(frames, dim=1) if frames else prefix.new_zeros(num_samples * b, 0, d)
    return out.view(num_samples, b, steps, d)
