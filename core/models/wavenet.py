"""WaveNet (van den Oord et al. 2016): a stack of gated, dilated causal convolutions.

Read top to bottom: the config, the residual layer, the network.

Tokens are integers in [0, Q). The network sees the sequence shifted right by one with a
start symbol (index Q) in front, so the logits at position t are a function of
x_{<t} only and the first element is modelled too:

    shifted s = [START, x_0, ..., x_{T-2}]
    input layer: causal conv of width K_in over one-hot(s)            (B, C_res, T)
    L residual layers, layer l: causal conv of width K, dilation d_l,
        z = W * h (+ class embedding + local features), gated tanh(z_a) * sigmoid(z_b),
        1x1 conv -> residual (added to h) and skip (summed over layers)
    head: relu -> 1x1 -> relu -> 1x1                                   (B, Q, T)

Receptive field R = sum_l (K-1) d_l + K_in: the logits at t depend on x_{t-R} .. x_{t-1}.
Padding is layer padding (each conv is left-padded with zeros); the cached generator's
ring buffers start as those same zeros, which is why it matches the full forward exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.conditioning import Cond, embed_classes
from core.models.registry import register
from core.pitch import CLASS_SOURCES, PITCH_CLASSES
from core.validation import is_int, need

CODECS = ("mulaw", "linear", "none")


@dataclass
class WaveNetConfig:
    quantization_levels: int = 256  # Q: categories per sample
    dilations: list[int] | None = None  # explicit; None -> [1, 2, ..., 2^(layers-1)] * stacks
    stacks: int = 2
    layers_per_stack: int = 10
    kernel_size: int = 2  # K
    input_kernel_size: int = 1  # K_in, width of the causal input layer
    residual_channels: int = 64
    dilation_channels: int = 64
    skip_channels: int = 128
    head_channels: int = 128
    n_classes: int = 0  # global conditioning: number of class ids (0 = none)
    # "" = the user picks the class; "pitch" = the class is the audio's pitch register (core.pitch.pitch_class):
    # the training clip's, and when continuing, the primer's.
    classes_from: str = ""
    local_channels: int = 0  # local conditioning: feature channels (0 = none)
    local_hop: int = 1  # samples per local-conditioning frame
    codec: str = "mulaw"  # what a token means: "mulaw", "linear" (audio) or "none"
    sample_rate: int = 16000  # samples per second of the signal (0 if not audio)
    extra: dict = field(default_factory=dict)  # free-form metadata (e.g. class names)

    def __post_init__(self) -> None:
        for name in ("stacks", "layers_per_stack", "input_kernel_size", "residual_channels",
                     "dilation_channels", "skip_channels", "head_channels", "local_hop"):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 1,
                 f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        need(is_int(self.quantization_levels) and 2 <= self.quantization_levels <= 65536,
             f"quantization_levels must be an integer in [2, 65536], got {self.quantization_levels!r}")
        need(is_int(self.kernel_size) and self.kernel_size >= 2,
             f"kernel_size must be an integer >= 2, got {self.kernel_size!r}")
        for name in ("n_classes", "local_channels", "sample_rate"):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 0,
                 f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        need(self.codec in CODECS, f"codec must be one of {CODECS}, got {self.codec!r}")
        need(self.classes_from in CLASS_SOURCES,
             f"classes_from must be one of {CLASS_SOURCES}, got {self.classes_from!r}")
        if self.classes_from == "pitch":
            need(self.n_classes == PITCH_CLASSES and self.sample_rate > 0,
                 f"classes_from 'pitch' needs audio (sample_rate > 0) and n_classes = {PITCH_CLASSES}, one per "
                 f"pitch register; got n_classes {self.n_classes!r}")
        if self.dilations is None:
            self.dilations = [2**i for i in range(self.layers_per_stack)] * self.stacks
        self.dilations = list(self.dilations)
        need(len(self.dilations) >= 1 and all(is_int(d) and d >= 1 for d in self.dilations),
             f"dilations must be a non-empty list of integers >= 1, got {self.dilations!r}")

    @property
    def receptive_field(self) -> int:
        """R = sum_l (K-1) d_l + K_in: how many past samples the logits at t can see."""
        return sum((self.kernel_size - 1) * d for d in self.dilations) + self.input_kernel_size


class ResidualLayer(nn.Module):
    """One gated dilated layer: (B, C_res, T) -> residual (B, C_res, T), skip (B, C_skip, T)."""

    def __init__(self, c: WaveNetConfig, dilation: int, last: bool):
        super().__init__()
        self.dilation = dilation
        self.padding = (c.kernel_size - 1) * dilation
        self.conv = nn.Conv1d(c.residual_channels, 2 * c.dilation_channels, c.kernel_size, dilation=dilation)
        # One 1x1 conv makes both outputs; the last layer's residual would be unused, so it has none.
        self.residual_channels = 0 if last else c.residual_channels
        self.out = nn.Conv1d(c.dilation_channels, self.residual_channels + c.skip_channels, 1)

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, C_res, T); cond (B, 2*C_dil, T or 1) or None -> (h', skip)."""
        z = self.conv(F.pad(h, (self.padding, 0)))
        if cond is not None:
            z = z + cond
        a, b = z.chunk(2, dim=1)
        o = self.out(torch.tanh(a) * torch.sigmoid(b))
        r = self.residual_channels
        return (h + o[:, :r] if r else h), o[:, r:]


@register("wavenet")
class WaveNet(nn.Module):
    config_class = WaveNetConfig
    default_objective = "nll"  # core.training.objectives: teacher-forced cross-entropy

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = c = config
        q, n_layers = c.quantization_levels, len(c.dilations)
        self.cond_channels = 2 * c.dilation_channels  # conditioning added to each layer's conv output
        # A conv over one-hot(shifted tokens); channel Q is the start symbol.
        self.input_conv = nn.Conv1d(q + 1, c.residual_channels, c.input_kernel_size)
        self.layers = nn.ModuleList(
            ResidualLayer(c, d, last=i == n_layers - 1) for i, d in enumerate(c.dilations)
        )
        self.class_embedding = nn.Embedding(c.n_classes, n_layers * self.cond_channels) if c.n_classes else None
        self.local_proj = (
            nn.Conv1d(c.local_channels, n_layers * self.cond_channels, 1) if c.local_channels else None
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv1d(c.skip_channels, c.head_channels, 1),
            nn.ReLU(), nn.Conv1d(c.head_channels, q, 1),
        )

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    # -- inputs -------------------------------------------------------------------------

    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor (B, T) of tokens, or FloatTensor (B, Q, T) of (soft) one-hots.

        Returns (B, C_res, T): the input layer over the shifted sequence [START, x_0..x_{T-2}].
        """
        q, k_in = self.config.quantization_levels, self.config.input_kernel_size
        w, b = self.input_conv.weight, self.input_conv.bias  # (C_res, Q+1, K_in), (C_res,)
        if x.dtype.is_floating_point:
            if x.dim() != 3 or x.shape[1] != q:
                raise ValueError(f"float input must be (B, {q}, T), got {tuple(x.shape)}")
            start = F.one_hot(torch.tensor(q), q + 1).to(x).view(1, q + 1, 1).expand(x.shape[0], -1, -1)
            s = torch.cat([start, F.pad(x, (0, 0, 0, 1))[:, :, :-1]], dim=2)
            return F.conv1d(F.pad(s, (k_in - 1, 0)), w, b)
        if x.dim() != 2:
            raise ValueError(f"token input must be (B, T), got {tuple(x.shape)}")
        s = torch.cat([torch.full_like(x[:, :1], q), x[:, :-1]], dim=1)
        # Embedding form of the same conv: tap k reads token s_{t-K_in+1+k}; index Q+1 is padding.
        s = F.pad(s, (k_in - 1, 0), value=q + 1)
        t = x.shape[1]
        out = b.view(1, -1, 1)
        for k in range(k_in):
            out = out + F.embedding(s[:, k : k + t], self.input_table(k)).transpose(1, 2)
        return out

    def input_table(self, k: int) -> torch.Tensor:
        """(Q+2, C_res): tap k of the input conv as a lookup table; row Q+1 (padding) is zero."""
        w = self.input_conv.weight[:, :, k].t()
        return torch.cat([w, w.new_zeros(1, w.shape[1])])

    def conditioning(self, cond: Cond | None, t: int, offset: int = 0) -> torch.Tensor | None:
        """Per-layer conditioning for positions offset..offset+t-1: (B, L*2*C_dil, t or 1) or None."""
        c = self.config
        cond = cond or Cond()
        total = self.class_conditioning(cond.classes)
        total = total.unsqueeze(-1) if total is not None else None
        if c.local_channels:
            if cond.local is None:
                raise ValueError("this model is locally conditioned: pass Cond(local=(B, C_local, T_local))")
            local = self.upsample_local(cond.local, t, offset)
            total = self.local_proj(local) if total is None else total + self.local_proj(local)
        elif cond.local is not None:
            raise ValueError("this model has no local conditioning (local_channels=0) but Cond.local was given")
        return total

    def class_conditioning(self, classes: torch.Tensor | None) -> torch.Tensor | None:
        """classes (B,) -> (B, L*2*C_dil), or None for a model without classes."""
        return embed_classes(self.class_embedding, self.config.n_classes, classes)

    def upsample_local(self, local: torch.Tensor, t: int, offset: int = 0) -> torch.Tensor:
        """(B, C_local, T_local) -> (B, C_local, t): frame (offset+i)//hop for sample offset+i."""
        c = self.config
        if local.dim() != 3 or local.shape[1] != c.local_channels:
            raise ValueError(f"local conditioning must be (B, {c.local_channels}, T_local), got {tuple(local.shape)}")
        idx = torch.arange(offset, offset + t, device=local.device) // c.local_hop
        if t and idx[-1] >= local.shape[2]:
            raise ValueError(
                f"local conditioning covers {local.shape[2] * c.local_hop} samples, need {offset + t}"
            )
        return local[:, :, idx]

    # -- the network --------------------------------------------------------------------

    def trunk(self, x: torch.Tensor, cond: Cond | None = None, offset: int = 0,
              keep_inputs: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Skip sum (B, C_skip, T) and, if keep_inputs, each layer's input (B, C_res, T)."""
        h = self.input_features(x)
        g = self.conditioning(cond, h.shape[2], offset)
        per_layer = g.chunk(len(self.layers), dim=1) if g is not None else [None] * len(self.layers)
        skip, inputs = 0, []
        for layer, gl in zip(self.layers, per_layer, strict=True):
            if keep_inputs:
                inputs.append(h)
            h, s = layer(h, gl)
            skip = skip + s
        return skip, inputs

    def forward(self, x: torch.Tensor, cond: Cond | None = None, offset: int = 0) -> torch.Tensor:
        """x (B, T) tokens or (B, Q, T) one-hots -> logits (B, Q, T); logits[..., t] see x_{<t} only.

        offset: the absolute position of x[:, 0], used only to align local conditioning.
        """
        skip, _ = self.trunk(x, cond, offset)
        return self.head(skip)
