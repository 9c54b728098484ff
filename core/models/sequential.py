"""The step protocol of sequential latent-variable models (VRNN, SRNN, Gaussian HMM).

A model that `core.inference` can filter exposes small steps and never imports the inference
code (the shape of FIVO's reference models and of Pyro's SMCFilter): the SMC engine owns the
particles, the resampling and the bound; the model only proposes and weighs.

Particles are folded into the batch: the engine tiles every per-sequence tensor N times,
particle-major, so row n * B + b is particle n of sequence b, and one call runs all of them.

    context = model.encode(batch_x, lengths)        # per-sequence tensors, (B, T, ...) or (B, ...), and
                                                    # SHARED ones (weights combined once per run), untiled
    state = model.zero_state(N * B)                 # flat mapping of tensors, each (N * B, ...)
    for t in range(T):
        state, log_w = model.propose_and_weight(state, tiled_context, t)   # log_w (N * B,)
        # log_w = log p(x_t, z_t | past) - log q(z_t | past, x), z_t drawn from the proposal q
        ... the engine accumulates log_w, resamples by re-indexing every tensor of `state`

Resampling re-indexes each tensor of the state along dim 0; a model keeps nothing else between
steps, so the engine never needs to know which model it runs. The relaxed resampler blends rows
instead (convex combinations), so every state tensor must then be floating point.

Optional: `fused_filter_inputs(x, lengths) -> FusedInputs` (the VRNN and the SRNN), with which the engine
runs the whole filter as one C call (core.inference.fused_filter).

Optional: a class attribute `latent_key` naming the state tensor that holds z_t; the engine's
trace records it per step and particle (core.inference.smc.SMCTrace.latents) for plots.

Randomness: draw proposals from torch's global generator (torch.randn_like ...); the engine
resamples from a generator of its own, so settings that differ only in resampling see the same
proposals (FIVO that never resamples equals IWAE bit for bit under one seed).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

State = dict[str, torch.Tensor]


class LatentStepModel(Protocol):
    """What the SMC engine needs from a model (plus the optional `latent_key`, see above)."""

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> State:
        """x (B, T, D) observations, lengths (B,) -> per-sequence context, every tensor (B, ...)."""
        ...

    def zero_state(self, batch: int) -> State:
        """The state before the first step, every tensor (batch, ...)."""
        ...

    def propose_and_weight(self, state: State, context: State, t: int) -> tuple[State, torch.Tensor]:
        """One step: draw z_t from the proposal, return (new state, log weight increment (batch,))."""
        ...


class FusedInputs(NamedTuple):
    """What a model hands core.inference.fused_filter (its optional `fused_filter_inputs(x, lengths)`), all
    differentiable: the C kernel then runs the model's steps and the engine's for the whole filter at once."""

    lstm: bool  # the VRNN's backbone (an LSTM over [enc_z, h]), else the SRNN's (see filter_kernel.c)
    seq: torch.Tensor  # (B, T, 4H) the VRNN's gates' term reading data_enc(input_t); (B, T, 3H) the SRNN's terms
    c_term: torch.Tensor | None  # (B, T, H) the VRNN's proposal term reading c_t (the SRNN's is in seq)
    layers: dict[str, torch.Tensor]  # fused_filter.LAYERS the model has, (in, out), and "NAME/b" for their biases


SHARED = "shared/"  # a context key with this prefix holds a tensor every row uses alike (weights combined once)


def tile(tensors: State, n: int) -> State:
    """Every tensor (B, ...) -> (n * B, ...), particle-major: row k * B + b is a copy of row b; the SHARED ones
    are passed as they are."""
    return {k: v if k.startswith(SHARED) else v.repeat(n, *([1] * (v.dim() - 1))) for k, v in tensors.items()}
