"""The receptive-field page's controls as a WaveNetConfig, and what every section of the page shares.

    config_from_controls(...)   kernel size, stacks, layers, dilation pattern, custom dilations, K_in -> WaveNetConfig
    diagram_length(config)      positions the diagram shows: R + MARGIN
    escape_markdown(text)       underscores escaped, so "K_in" reads as written
"""

from __future__ import annotations

from core import cone
from core.errors import ConfigError
from core.models.wavenet import WaveNetConfig
from pages.checks import is_whole

MARGIN = 4  # the diagram shows positions 0 .. R + MARGIN - 1: the newest output's whole cone, and some room
LIT, FAINT, PAD, TARGET = "#d62728", "#c7c7c7", "#7f7f7f", "#1f77b4"


def config_from_controls(kernel_size: float, stacks: float, layers_per_stack: float, pattern: str,
                         custom_dilations: str | None, input_kernel_size: float, channels: float = 64,
                         quantization_levels: int = 256) -> WaveNetConfig:
    """The WaveNetConfig the controls describe (ConfigError naming the control that is wrong).

    channels sets C_res = C_dil, and C_skip = C_head = 2 * channels.
    """
    for name, value, low in (("kernel size", kernel_size, 2), ("stacks", stacks, 1),
                             ("layers per stack", layers_per_stack, 1), ("input kernel size", input_kernel_size, 1),
                             ("channels", channels, 1)):
        if not (is_whole(value) and value >= low):
            raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    dilations = cone.dilations_for(pattern, int(layers_per_stack), int(stacks), custom_dilations)
    c = int(channels)
    return WaveNetConfig(quantization_levels=quantization_levels, dilations=dilations, kernel_size=int(kernel_size),
                         input_kernel_size=int(input_kernel_size), residual_channels=c, dilation_channels=c,
                         skip_channels=2 * c, head_channels=2 * c, codec="none", sample_rate=0)


def diagram_length(config: WaveNetConfig) -> int:
    """Positions 0 .. T-1 the diagram shows: T = R + MARGIN."""
    return config.receptive_field + MARGIN


def escape_markdown(text: str) -> str:
    """Underscores escaped, so "K_in ... C_res" reads as written instead of turning italic."""
    return text.replace("_", "\\_")


# The guided story at the top of the page: each step sets the controls
# (kernel size, stacks, layers per stack, pattern, custom dilations, K_in) and says what to look at.
STORY = {
    "1. one layer": ((2, 1, 1, "exponential", "1", 1),
                     "One causal conv of kernel 2 over the input layer: each output sees the two samples before it. "
                     "Hover the outputs on top."),
    "2. dilate": ((2, 1, 4, "exponential", "1, 2, 4, 8", 1),
                  "Dilations 1, 2, 4, 8: each layer skips twice as far, so four layers reach back 16 samples with "
                  "no holes, for 4 × 2 weights a channel pair."),
    "3. stack": ((2, 3, 4, "exponential", "1, 2, 4, 8", 1),
                 "Three stacks of 1, 2, 4, 8: R grows by 15 per stack, linearly; the outputs near the start "
                 "read the zero padding (the grey column)."),
    "4. what the model really uses": ((2, 3, 10, "exponential", "1, 2, 4, 8", 1),
                                      "A WaveNet-sized stack: three stacks of 1 … 512, R = 3,070; the two lower "
                                      "stacks are drawn as one row. The cone is what the model may use; "
                                      "*Measured receptive field* below shows how much of it a model does use: "
                                      "most of the gradient sits at the smallest lags."),
}


def story_step(step: str) -> tuple:
    """The controls for one step of the story, then its text: (K, stacks, layers, pattern, custom, K_in, Markdown)."""
    if step not in STORY:
        raise ConfigError(f"story step must be one of {list(STORY)}, got {step!r}")
    controls, text = STORY[step]
    return (*controls, text)
