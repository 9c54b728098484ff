"""The dependency graph of a WaveNet's dilated causal convolutions, as pure functions.

The graph has L + 2 levels (L = len(config.dilations)), each a row of nodes over time:

    level 0       the inputs x_j (j >= 0) and the start symbol at j = START = -1
    level 1       the input layer, width K_in: node t reads the shifted inputs s_{t-K_in+1} .. s_t,
                  and s_t = x_{t-1} (s_0 = START), so it reads x_{t-K_in} .. x_{t-1}
    level 1 + l   residual layer l = 1..L, kernel K, dilation d_l: node t reads level l at
                  t - j d_l for j = 0 .. K-1 (tap j = 0 is also the residual connection)

The top node at t stands for the logits of x_t: the skips of the lower layers at t are all in
its cone (through the j = 0 taps), so the output at t depends on exactly the inputs that the
top node at t reaches. Positions in front of a level's first real node (START at level 0,
0 at the other levels) are the zero padding the next conv puts in front of its input
(layer padding, see core/models/wavenet.py): they read nothing.

Closed form: R = sum_l (K-1) d_l + K_in; the output at t depends on x_{t-R} .. x_{t-1}.
Everything here takes a WaveNetConfig and returns plain Python values; sizes are counts of
nodes (samples), parameters are counts of scalars, memory is bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import ConfigError
from core.models.wavenet import WaveNetConfig

START = -1  # position of the start symbol in level 0: s_0 = START, s_t = x_{t-1}
PATTERNS = ("exponential", "linear", "constant", "custom")


@dataclass(frozen=True)
class Contribution:
    """How far back one level reaches: `samples` of the receptive field R."""

    name: str  # "input layer" or "layer l"
    kernel: int  # K_in or K
    dilation: int  # 1 for the input layer, d_l otherwise
    samples: int  # K_in for the input layer (its K_in - 1 taps back plus the shift by one), (K-1) d_l otherwise


@dataclass(frozen=True)
class TapCounts:
    """Conv weights per (input channel, output channel) pair, the count of the WaveNet talk's "18 vs 512".

    dilated: sum_l K over the dilated layers (the talk's stack has no separate input layer);
    input:   K_in, the input layer's taps, on top of `dilated`;
    plain:   R, one plain causal conv of width R that sees as far back.
    """

    dilated: int
    input: int
    plain: int


@dataclass(frozen=True)
class ConvParameters:
    """Scalars (weights + biases) in the dilated convs vs one plain causal conv with the same R.

    Both map C_res channels to 2 C_dil (the gate's two halves), like each WaveNet layer's conv.
    """

    dilated: int  # L (K C_res 2 C_dil + 2 C_dil)
    plain: int  # R C_res 2 C_dil + 2 C_dil


def dilations_for(pattern: str, layers_per_stack: int, stacks: int, custom: str | list[int] | None = None) -> list[int]:
    """The dilations of `stacks` repeats of one stack, (stacks * n,) ints >= 1.

    pattern: "exponential" (1, 2, 4, .., 2^(n-1)), "linear" (1, 2, .., n), "constant" (1, .., 1),
    each with n = layers_per_stack, or "custom": one stack's dilations given by `custom`, a list or
    a string like "1, 2, 4, 8" (layers_per_stack is then ignored).
    """
    if pattern not in PATTERNS:
        raise ConfigError(f"dilation pattern must be one of {PATTERNS}, got {pattern!r}")
    for name, value in (("layers_per_stack", layers_per_stack), ("stacks", stacks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if pattern == "exponential":
        stack = [2**i for i in range(layers_per_stack)]
    elif pattern == "linear":
        stack = list(range(1, layers_per_stack + 1))
    elif pattern == "constant":
        stack = [1] * layers_per_stack
    else:
        stack = _parse_dilations(custom)
    return stack * stacks


def _parse_dilations(custom: str | list[int] | None) -> list[int]:
    if isinstance(custom, str):
        pieces = [p for p in re.split(r"[\s,;]+", custom.strip()) if p]
        if not all(p.isdigit() for p in pieces):
            raise ConfigError(f"custom dilations must be whole numbers >= 1 separated by commas, got {custom!r}")
        custom = [int(p) for p in pieces]
    if not custom or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in custom):
        raise ConfigError(f"custom dilations must be a non-empty list of whole numbers >= 1, got {custom!r}")
    return list(custom)


def n_levels(config: WaveNetConfig) -> int:
    """L + 2: the inputs, the input layer, and one level per dilated layer."""
    return len(config.dilations) + 2


def level_names(config: WaveNetConfig) -> list[str]:
    """A label per level, bottom to top: "x", "input K_in=..", "layer 1 d=..", ..."""
    return (["x (input)", f"input layer K_in={config.input_kernel_size}"]
            + [f"layer {i + 1} d={d}" for i, d in enumerate(config.dilations)])


def first_real(level: int) -> int:
    """The first position of `level` that is not padding: START at level 0, 0 above."""
    return START if level == 0 else 0


def parents(config: WaveNetConfig, level: int, t: int) -> list[int]:
    """Positions at level - 1 that node (level, t) reads, padding included (for level in 1 .. L+1)."""
    top = n_levels(config) - 1
    if not 1 <= level <= top:
        raise ValueError(f"level must be in [1, {top}], got {level}")
    if level == 1:
        return [t - 1 - i for i in range(config.input_kernel_size)]  # s_{t-i} = x_{t-1-i}
    d = config.dilations[level - 2]
    return [t - j * d for j in range(config.kernel_size)]


def dependency_graph(config: WaveNetConfig, length: int, padding: bool = False) -> list[list[tuple[int, int]]]:
    """The edges of the graph over positions 0 .. length-1 of every level.

    Returns L + 1 lists; list l - 1 holds the edges (source position at level l-1, target position at
    level l) for level l = 1 .. L+1. Edges from padding are left out unless `padding`.
    """
    if not (isinstance(length, int) and length >= 1):
        raise ValueError(f"length must be an integer >= 1, got {length!r}")
    edges = []
    for level in range(1, n_levels(config)):
        lowest = first_real(level - 1)
        edges.append([(p, t) for t in range(length) for p in parents(config, level, t) if padding or p >= lowest])
    return edges


def cone(config: WaveNetConfig, t_out: int, padding: bool = False) -> list[set[int]]:
    """The nodes the output at t_out depends on: one set of positions per level, bottom (inputs) to top.

    The top set is {t_out}; set 0 holds the inputs x_j (j >= 0) and START if reached. With `padding`,
    the padding positions the cone reaches are included too (negative positions, below START at level 0).
    """
    if isinstance(t_out, bool) or not isinstance(t_out, int) or t_out < 0:
        raise ValueError(f"t_out must be an integer >= 0, got {t_out!r}")
    top = n_levels(config) - 1
    sets: list[set[int]] = [set() for _ in range(top + 1)]
    sets[top].add(t_out)
    for level in range(top, 0, -1):
        for t in sets[level]:
            if t >= first_real(level):  # padding reads nothing
                sets[level - 1].update(parents(config, level, t))
    if not padding:
        sets = [{t for t in s if t >= first_real(level)} for level, s in enumerate(sets)]
    return sets


def input_positions(config: WaveNetConfig, t_out: int) -> set[int]:
    """The input positions j >= 0 whose x_j the logits at t_out depend on: {t_out-R .. t_out-1} cut at 0."""
    return {j for j in cone(config, t_out)[0] if j >= 0}


def path_counts(config: WaveNetConfig, t_out: int) -> dict[int, int]:
    """Number of paths through the conv taps from each level-0 node (START included) up to the output at t_out.

    A residual connection runs beside tap j = 0 and the skips add shortcuts; they are not counted.
    """
    counts = {t_out: 1}
    for level in range(n_levels(config) - 1, 0, -1):
        below: dict[int, int] = {}
        for t, n in counts.items():
            if t >= first_real(level):
                for p in parents(config, level, t):
                    if p >= first_real(level - 1):
                        below[p] = below.get(p, 0) + n
        counts = below
    return counts


def contributions(config: WaveNetConfig) -> list[Contribution]:
    """Each level's share of R, input layer first; their `samples` sum to config.receptive_field."""
    k = config.kernel_size
    return [Contribution("input layer", config.input_kernel_size, 1, config.input_kernel_size)] + [
        Contribution(f"layer {i + 1}", k, d, (k - 1) * d) for i, d in enumerate(config.dilations)
    ]


def tap_counts(config: WaveNetConfig) -> TapCounts:
    """Weights per channel pair: the dilated stack's sum_l K (+ K_in) vs a plain causal conv's R."""
    return TapCounts(dilated=config.kernel_size * len(config.dilations), input=config.input_kernel_size,
                     plain=config.receptive_field)


def conv_parameters(config: WaveNetConfig) -> ConvParameters:
    """Scalars in the dilated convs (C_res -> 2 C_dil each) vs one plain causal conv of width R, same channels."""
    c_in, c_out = config.residual_channels, 2 * config.dilation_channels
    layers = len(config.dilations)
    return ConvParameters(dilated=layers * (config.kernel_size * c_in * c_out + c_out),
                          plain=config.receptive_field * c_in * c_out + c_out)


def model_parameters(config: WaveNetConfig) -> int:
    """Scalars in the whole WaveNet built from `config` (core.models.wavenet.WaveNet), counted in closed form."""
    q, k_in, k = config.quantization_levels, config.input_kernel_size, config.kernel_size
    c_res, c_dil, c_skip, c_head = (config.residual_channels, config.dilation_channels, config.skip_channels,
                                    config.head_channels)
    layers = len(config.dilations)
    total = (q + 1) * c_res * k_in + c_res  # input conv over one-hot + start symbol
    for i in range(layers):
        out = (0 if i == layers - 1 else c_res) + c_skip  # the last layer has no residual output
        total += c_res * 2 * c_dil * k + 2 * c_dil + c_dil * out + out
    if config.n_classes:
        total += config.n_classes * layers * 2 * c_dil
    if config.local_channels:
        total += (config.local_channels + 1) * layers * 2 * c_dil
    return total + c_skip * c_head + c_head + c_head * q + q


def queue_sizes(config: WaveNetConfig) -> list[int]:
    """Slots in each layer's ring buffer in the cached generator (core.generation.cached.CachedStepper): (K-1) d_l."""
    return [(config.kernel_size - 1) * d for d in config.dilations]


def queue_memory(config: WaveNetConfig, batch: int, bytes_per_value: int = 4) -> int:
    """Bytes of the cached generator's state: each ring (S_l, B, C_res) of floats, plus (B, K_in) int64 tokens."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    slots = sum(queue_sizes(config))
    return slots * batch * config.residual_channels * bytes_per_value + batch * config.input_kernel_size * 8


def layer_evaluations(config: WaveNetConfig) -> tuple[int, int]:
    """(naive, cached) layer-position evaluations per generated sample once t >= R.

    Naive runs the whole stack over the last R + 1 positions ((R + 1) L); cached runs each layer once (L).
    """
    layers = len(config.dilations)
    return (config.receptive_field + 1) * layers, layers
