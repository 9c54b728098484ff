"""Grow a trained WaveNet wider without changing what it computes, so training goes on from where it was.

    widen_state(state, old, new)   the weights of `new` (a WaveNet with as many or more residual and
                                   dilation channels than `old`, the rest of its config alike) that make it
                                   compute exactly what `state` (old's weights) computes

The old weights fill the first channels of every tensor. A new channel is *written* by freshly
initialised weights (the new model's own initial values) but *read* by zeros wherever an old channel
is computed from it: new residual channels feed old gates through zero columns of each layer's
dilated conv, new gate channels feed the old residual and skip outputs through zero columns of each
layer's 1x1 conv. So every old channel, and the logits, are what they were. The new channels carry
signal from the first step (the input conv writes them), so the gradients of those zero columns are not
zero and training puts them to use. The same trick starts a residual branch at zero; a WaveNet only
ever adds, which is what makes it exact.

Layouts (core.models.wavenet): a layer's dilated conv gives 2*C_dil channels, tanh half then sigmoid
half; its 1x1 conv gives C_res residual channels then C_skip skip channels (the last layer: skip only);
the class embedding and the local projection give, per layer, 2*C_dil values laid out like the conv's.
"""

from __future__ import annotations

import torch

from core.errors import ConfigError
from core.models.wavenet import WaveNet, WaveNetConfig

WIDENED = ("residual_channels", "dilation_channels")  # the widths widen_state may grow
KEPT = ("quantization_levels", "dilations", "kernel_size", "input_kernel_size", "skip_channels", "head_channels",
        "local_channels")  # what must match for the old weights to mean the same in the new model


def widen_state(state: dict[str, torch.Tensor], old: WaveNetConfig, new: WaveNet) -> dict[str, torch.Tensor]:
    """A state dict for `new` that computes what `state` computes under config `old` (module docstring).

    ConfigError if `new` is narrower than `old` in a width of WIDENED or differs from it in any of KEPT or in
    its class count. A class embedding `state` lacks (old.n_classes 0) starts at zero, as
    core.checkpoints.load_weights_into does for a model of the same width.
    """
    c = new.config
    changed = [f"{name} {getattr(old, name)!r} -> {getattr(c, name)!r}" for name in KEPT
               if getattr(old, name) != getattr(c, name)]
    if old.n_classes and old.n_classes != c.n_classes:
        changed.append(f"n_classes {old.n_classes} -> {c.n_classes}")
    if changed:
        raise ConfigError("a WaveNet can only be widened in " + " and ".join(WIDENED) + "; this one also changes "
                          + ", ".join(changed))
    narrower = [f"{name} {getattr(old, name)} -> {getattr(c, name)}" for name in WIDENED
                if getattr(c, name) < getattr(old, name)]
    if narrower:
        raise ConfigError("a WaveNet cannot be made narrower: " + ", ".join(narrower))
    r, d, s = old.residual_channels, old.dilation_channels, old.skip_channels
    rn, dn = c.residual_channels, c.dilation_channels
    gate = _halves(d, dn)  # old rows of a (2*C_dil)-wide output -> new rows
    out = {key: value.detach().clone() for key, value in new.state_dict().items()}  # the new model's own init

    def fill(key: str, rows: torch.Tensor | slice, cols: torch.Tensor | slice | None = None,
             zero_cols: slice | None = None) -> None:
        """out[key][rows, cols] = state[key]; zero the new input columns `zero_cols` of the old rows."""
        target = out[key]
        if zero_cols is not None:
            target[rows, zero_cols] = 0
        target[(rows,) if cols is None else (rows, cols)] = state[key]

    fill("input_conv.weight", slice(0, r))
    fill("input_conv.bias", slice(0, r))
    for i, layer in enumerate(new.layers):
        p = f"layers.{i}."
        fill(p + "conv.weight", gate, slice(0, r), zero_cols=slice(r, rn))
        fill(p + "conv.bias", gate)
        res_new = layer.residual_channels  # 0 for the last layer
        res_old = r if res_new else 0
        rows = torch.cat([torch.arange(res_old), torch.arange(res_new, res_new + s)])  # residual, then skip
        fill(p + "out.weight", rows, slice(0, d), zero_cols=slice(d, dn))
        fill(p + "out.bias", rows)
    for key in [k for k in out if k.startswith("head.")]:
        out[key] = state[key].clone()
    per_layer = torch.cat([gate + 2 * dn * i for i in range(len(new.layers))])
    if new.class_embedding is not None:
        out["class_embedding.weight"].zero_()
        if "class_embedding.weight" in state:
            out["class_embedding.weight"][:, per_layer] = state["class_embedding.weight"]
    if new.local_proj is not None:
        for key in ("local_proj.weight", "local_proj.bias"):
            out[key].zero_()
            out[key][per_layer] = state[key]
    return out


def _halves(d: int, dn: int) -> torch.Tensor:
    """Where the 2*d rows of an old gated output (tanh half, sigmoid half) go among the new 2*dn rows."""
    return torch.cat([torch.arange(d), dn + torch.arange(d)])
