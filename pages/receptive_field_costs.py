"""What the dilated stack costs: its parameters against one plain causal conv, and the cached generator's queues.

    stack_costs(...)   the handler: (parameters Markdown, queues Markdown) for the controls, channels and batch
"""

from __future__ import annotations

import gradio as gr

from core import cone
from core.errors import ConfigError, StudioError
from core.models.wavenet import WaveNetConfig
from pages.checks import is_whole
from pages.receptive_field_controls import config_from_controls, escape_markdown


def stack_costs(kernel_size: float, stacks: float, layers_per_stack: float, pattern: str,
                custom_dilations: str | None, input_kernel_size: float, channels: float,
                batch: float) -> tuple[str, str]:
    """(parameters Markdown, queues Markdown) for the controls' config at `channels` and `batch`."""
    try:
        config = config_from_controls(kernel_size, stacks, layers_per_stack, pattern, custom_dilations,
                                      input_kernel_size, channels)
        if not (is_whole(batch) and batch >= 1):
            raise ConfigError(f"batch must be a whole number >= 1, got {batch!r}")
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    return parameters_markdown(config), queues_markdown(config, int(batch))


def parameters_markdown(config: WaveNetConfig) -> str:
    """Taps per channel pair and real parameter counts: the dilated stack vs one plain causal conv."""
    taps, params = cone.tap_counts(config), cone.conv_parameters(config)
    k, n = config.kernel_size, len(config.dilations)
    c, c2 = config.residual_channels, 2 * config.dilation_channels
    return escape_markdown("\n".join([
        f"**Weights per channel pair:** the dilated stack has {k} × {n} = **{taps.dilated:,}** "
        f"(+ {taps.input} in the input layer); one plain causal conv that sees as far back needs R = "
        f"**{taps.plain:,}** — {taps.plain / taps.dilated:,.1f}× more. (The talk's example: K = 2, nine layers "
        "1 … 256, R = 512: 18 vs 512.)",
        "",
        f"**With channels** (C_res = {c} in, 2·C_dil = {c2} out, weights + biases): the dilated convs hold "
        f"**{params.dilated:,}** parameters, a plain conv of width R would hold **{params.plain:,}**. "
        f"The whole WaveNet at these widths (Q = {config.quantization_levels}, skip = head = "
        f"{config.skip_channels}) has {cone.model_parameters(config):,} parameters.",
    ]))


def queues_markdown(config: WaveNetConfig, batch: int) -> str:
    """The cached generator's ring buffers per layer, their memory, and the work per sample."""
    sizes = cone.queue_sizes(config)
    c = config.residual_channels
    naive, cached = cone.layer_evaluations(config)
    memory = cone.queue_memory(config, batch)
    lines = [
        f"The cached generator (Paine et al. 2016; `CachedStepper` in core/generation) keeps, per layer, a ring of its "
        f"last (K−1)·d inputs, each (B, C_res) = ({batch}, {c}) float32. Together **{sum(sizes):,} slots = "
        f"R − K_in**, **{_bytes(memory)}** (with the (B, K_in) input tokens). The naive generator keeps no state "
        f"but reruns the stack over the last R + 1 = {config.receptive_field + 1:,} positions for every sample: "
        f"{naive:,} layer evaluations per sample against {cached:,} — {naive // cached:,}× the work.",
        "",
        "| layer | dilation | slots (K−1)·d | memory |",
        "|---|---|---|---|",
    ]
    lines += [f"| {i + 1} | {d} | {s} | {_bytes(s * batch * c * 4)} |"
              for i, (d, s) in enumerate(zip(config.dilations, sizes, strict=True))]
    return escape_markdown("\n".join(lines))


def _bytes(n: int) -> str:
    """1536 -> "1.5 KiB"."""
    if n < 1024:
        return f"{n:,} B"
    return f"{n / 1024:,.1f} KiB" if n < 1024**2 else f"{n / 1024**2:,.1f} MiB"
