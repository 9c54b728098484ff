"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

Read top to bottom: the config, the gated layer, the network.

Tokens are grey levels in [0, Q) of an H x W image, flattened in raster order (row by
row, left to right) to T = H*W positions, so the model plugs into the same training loop
as a scanline WaveNet. The logits at pixel i = (r, c) are a function of the pixels
before it in raster order only; pixel 0 sees nothing but the class and the biases, so
every pixel is modelled (no start symbol is needed: zero padding stands for "no pixel").

    embedding: per-pixel lookup, token -> C features (a 1x1 conv over one-hots)     (B, C, H, W)
    both stacks start from it: v_0 = h_0 = embedding
    L gated layers, layer l (kernel k, s = k // 2; the first layer uses first_kernel_size):
        vertical:   v_pre = conv (s+1) x k over rows r-s..r, columns c-s..c+s       (B, 2C, H, W)
        horizontal: h_pre = conv 1 x (s+1) over columns c-s..c of row r ("mask B"),
                    or 1 x s over columns c-s..c-1 in the first layer ("mask A")
                    + 1x1(v_pre shifted down one row)  -- the vertical stack reaches the
                      horizontal one only from the row above, never the current row
        both pre-activations + the class embedding of this layer
        v_l = tanh * sigmoid(v_pre);  g = tanh * sigmoid(h_pre)
        1x1(g) -> residual (h_l = h_{l-1} + residual; the first layer has no residual, since
                  h_0 holds the current pixel) and skip (summed over layers)
    head: relu -> 1x1 -> relu -> 1x1                                                 (B, Q, H*W)

Receptive field. It is a region of the image, not a number, so there is no scalar
`receptive_field` (`model_store` then lists None). With the radius
a = first_kernel_size // 2 + (layers - 1) * (kernel_size // 2) (`PixelCNNConfig.receptive_radius`),
the logits at (r, c) depend exactly on

    the a + 1 rows above, r-1-a .. r-1, in columns c-a .. c+a, and
    the current row r in columns c-a .. c-1,

clipped to the image (`receptive_field_mask`). The vertical stack grows a rectangle by s
rows up and s columns each side per layer; each later horizontal layer shifts it s columns
left, so every layer's contribution ends at the same left column c-a: the region has no
blind spot, unlike the original single-stack masked PixelCNN. The last pixel sees every
earlier pixel once a >= max(W - 1, H - 2) (`covers_image`); then so does every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.conditioning import Cond, embed_classes
from core.models.registry import register
from core.validation import is_int, need

__all__ = ["Cond", "GatedPixelCNN", "PixelCNNConfig"]


@dataclass
class PixelCNNConfig:
    quantization_levels: int = 256  # Q: grey levels per pixel
    height: int = 28  # H
    width: int = 28  # W
    channels: int = 32  # C: features per stack
    layers: int = 12  # L gated layers
    first_kernel_size: int = 7  # k of the first layer (odd >= 3)
    kernel_size: int = 3  # k of the later layers (odd >= 3)
    skip_channels: int = 64
    head_channels: int = 128
    n_classes: int = 0  # class conditioning: number of class ids (0 = none)
    extra: dict = field(default_factory=dict)  # free-form metadata (e.g. class names)

    def __post_init__(self) -> None:
        for name in ("height", "width", "channels", "layers", "skip_channels", "head_channels"):
            v = getattr(self, name)
            need(is_int(v) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        need(is_int(self.quantization_levels) and 2 <= self.quantization_levels <= 65536,
             f"quantization_levels must be an integer in [2, 65536], got {self.quantization_levels!r}")
        for name in ("first_kernel_size", "kernel_size"):
            v = getattr(self, name)
            need(is_int(v) and v >= 3 and v % 2 == 1, f"{name} must be an odd integer >= 3, got {v!r}")
        need(is_int(self.n_classes) and self.n_classes >= 0,
             f"n_classes must be an integer >= 0, got {self.n_classes!r}")
        need(isinstance(self.extra, dict), f"extra must be a dict, got {self.extra!r}")

    @property
    def pixels(self) -> int:
        """T = H*W: positions in the raster scanline."""
        return self.height * self.width

    @property
    def receptive_radius(self) -> int:
        """a = first_kernel_size // 2 + (layers - 1) * (kernel_size // 2); see the module docstring."""
        return self.first_kernel_size // 2 + (self.layers - 1) * (self.kernel_size // 2)

    @property
    def covers_image(self) -> bool:
        """Whether the logits of every pixel see every earlier pixel: a >= max(W - 1, H - 2)."""
        return self.receptive_radius >= max(self.width - 1, self.height - 2)

    def receptive_field_mask(self, pixel: int) -> torch.Tensor:
        """BoolTensor (H*W,): the raster positions the logits at `pixel` depend on."""
        if not isinstance(pixel, int) or not 0 <= pixel < self.pixels:
            raise ValueError(f"pixel must be an integer in [0, {self.pixels}), got {pixel!r}")
        r, c = divmod(pixel, self.width)
        a = self.receptive_radius
        rows = torch.arange(self.height).view(-1, 1)
        cols = torch.arange(self.width).view(1, -1)
        above = (rows >= r - 1 - a) & (rows <= r - 1) & ((cols - c).abs() <= a)
        left = (rows == r) & (cols >= c - a) & (cols < c)
        return (above | left).flatten()


def gate(z: torch.Tensor) -> torch.Tensor:
    """(B, 2C, H, W) -> (B, C, H, W): tanh(first half) * sigmoid(second half)."""
    a, b = z.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of both stacks: (v, h) (B, C, H, W) each -> (v', h', skip (B, C_skip, H, W))."""

    def __init__(self, c: PixelCNNConfig, first: bool, last: bool):
        super().__init__()
        k = c.first_kernel_size if first else c.kernel_size
        self.s, self.first, self.last = k // 2, first, last
        ch = c.channels
        self.v_conv = nn.Conv2d(ch, 2 * ch, (self.s + 1, k))
        # Mask A (first layer): the s pixels left of the current one; mask B: those and the current one.
        self.h_conv = nn.Conv2d(ch, 2 * ch, (1, self.s if first else self.s + 1))
        self.v_to_h = nn.Conv2d(2 * ch, 2 * ch, 1)
        # One 1x1 conv makes both outputs; the last layer's residual would be unused, so it has none.
        self.residual_channels = 0 if last else ch
        self.h_out = nn.Conv2d(ch, self.residual_channels + c.skip_channels, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor,
                cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """v, h (B, C, H, W); cond (B, 4C, 1, 1) or None -> (v', h', skip)."""
        cv, ch = cond.chunk(2, dim=1) if cond is not None else (None, None)
        v, v_pre = self.vertical(v, cv)
        from_above = self.v_to_h(F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1])  # shifted down: row r gets row r-1
        h, skip = self.horizontal(h, from_above if ch is None else from_above + ch)
        return v, h, skip

    def vertical(self, v: torch.Tensor, cv: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B, C, H', W) -> (v' (B, C, H', W), v_pre before the class (B, 2C, H', W)); row r sees rows <= r."""
        s = self.s
        v_pre = self.v_conv(F.pad(v, (s, s, s, 0)))  # (r, c) sees rows r-s..r, columns c-s..c+s
        if self.last:  # the last vertical output would be unused
            return v, v_pre
        return gate(v_pre if cv is None else v_pre + cv), v_pre

    def horizontal(self, h: torch.Tensor, from_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, C, H', W) and what the rows above (and the class) give it (B, 2C, H', W) -> (h', skip)."""
        s, width = self.s, h.shape[3]
        # Mask A: a width-s kernel over left padding s gives W + 1 outputs; output c sees c-s..c-1.
        o = self.h_out(gate(self.h_conv(F.pad(h, (s, 0)))[..., :width] + from_above))
        r = self.residual_channels
        if r:
            h = o[:, :r] if self.first else h + o[:, :r]
        return h, o[:, r:]


@register("pixelcnn")
class GatedPixelCNN(nn.Module):
    config_class = PixelCNNConfig
    default_objective = "nll"  # core.training.objectives: teacher-forced cross-entropy

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = c = config
        self.cond_channels = 4 * c.channels  # class embedding per layer: vertical 2C + horizontal 2C
        self.embedding = nn.Embedding(c.quantization_levels, c.channels)
        self.layers = nn.ModuleList(
            GatedLayer(c, first=i == 0, last=i == c.layers - 1) for i in range(c.layers)
        )
        self.class_embedding = nn.Embedding(c.n_classes, c.layers * self.cond_channels) if c.n_classes else None
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c.skip_channels, c.head_channels, 1),
            nn.ReLU(), nn.Conv2d(c.head_channels, c.quantization_levels, 1),
        )

    def receptive_field_mask(self, pixel: int) -> torch.Tensor:
        """BoolTensor (H*W,): the raster positions the logits at `pixel` depend on (see the module docstring)."""
        return self.config.receptive_field_mask(pixel)

    # -- inputs -------------------------------------------------------------------------

    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: LongTensor (B, H*W) of tokens, or FloatTensor (B, Q, H*W) of (soft) one-hots -> (B, C, H, W)."""
        c = self.config
        if x.dtype.is_floating_point:
            if x.dim() != 3 or x.shape[1:] != (c.quantization_levels, c.pixels):
                raise ValueError(f"float input must be (B, {c.quantization_levels}, {c.pixels}), got {tuple(x.shape)}")
            e = torch.einsum("bqt,qc->bct", x, self.embedding.weight)
        else:
            if x.dim() != 2 or x.shape[1] != c.pixels:
                raise ValueError(f"token input must be (B, {c.pixels}) = (B, H*W), got {tuple(x.shape)}")
            e = self.embedding(x).transpose(1, 2)
        return e.reshape(x.shape[0], c.channels, c.height, c.width)

    def class_conditioning(self, cond: Cond | None) -> torch.Tensor | None:
        """Cond(classes (B,)) -> (B, L*4C, 1, 1), or None for a model without classes."""
        cond = cond or Cond()
        if cond.local is not None:
            raise ValueError("a PixelCNN has no local conditioning but Cond.local was given")
        g = embed_classes(self.class_embedding, self.config.n_classes, cond.classes)
        return None if g is None else g[:, :, None, None]

    # -- the network --------------------------------------------------------------------

    def forward(self, x: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """x (B, H*W) tokens or (B, Q, H*W) one-hots -> logits (B, Q, H*W); pixel i sees pixels < i only."""
        v = h = self.input_features(x)
        g = self.class_conditioning(cond)
        per_layer = g.chunk(len(self.layers), dim=1) if g is not None else [None] * len(self.layers)
        skip = 0
        for layer, gl in zip(self.layers, per_layer, strict=True):
            v, h, s = layer(v, h, gl)
            skip = skip + s
        return self.head(skip).flatten(2)

    # -- row by row, for sampling ---------------------------------------------------------

    def row_context(self, x: torch.Tensor, cond: Cond | None, row: int) -> list[torch.Tensor]:
        """What row `row` gets from the rows above it and the class, per layer: [(B, 2C, 1, W)] * L.

        x (B, H*W) tokens; only rows < `row` are read. With it, `row_logits` gives the logits of
        the whole row from the row's own tokens: sampling costs one vertical pass per row plus
        one cheap one-row horizontal pass per pixel, not one full forward pass per pixel.
        """
        g = self.class_conditioning(cond)
        per_layer = g.chunk(len(self.layers), dim=1) if g is not None else [None] * len(self.layers)
        v = self.input_features(x)[:, :, :row]  # (B, C, row, W): rows above only
        context = []
        for layer, gl in zip(self.layers, per_layer, strict=True):
            cv, ch = gl.chunk(2, dim=1) if gl is not None else (None, None)
            if row:
                v, v_pre = layer.vertical(v, cv)
                above = v_pre[:, :, -1:]
            else:  # the first row sees the zero padding above the image
                above = x.new_zeros((x.shape[0], layer.v_to_h.in_channels, 1, self.config.width), dtype=v.dtype)
            from_above = layer.v_to_h(above)
            context.append(from_above if ch is None else from_above + ch)
        return context

    def row_logits(self, tokens: torch.Tensor, context: list[torch.Tensor]) -> torch.Tensor:
        """One row's tokens (B, W) and its `row_context` -> logits (B, Q, W); column c sees columns < c."""
        h = self.embedding(tokens).transpose(1, 2).unsqueeze(2)  # (B, C, 1, W)
        skip = 0
        for layer, from_above in zip(self.layers, context, strict=True):
            h, s = layer.horizontal(h, from_above)
            skip = skip + s
        return self.head(skip).flatten(2)

    def log_prob(self, x: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """x LongTensor (B, H*W) -> (B,) log-likelihood of each whole image in nats."""
        return -F.cross_entropy(self(x, cond), x, reduction="none").sum(dim=1)
