"""The receptive-field page: how far back a WaveNet sees, why dilations make that cheap, and what it costs.

This module lays the page out and wires its events. Every section is a plain handler of the controls
(kernel size K, stacks, layers per stack, dilation pattern, custom dilations, input kernel size K_in),
testable without a browser, in a module of its own:

    receptive_field_controls.story_step(step)             the guided story's four steps as control values
    receptive_field_plots.receptive_field_diagram(...)    the graph (levels x time, inline SVG) with one output's
                                                          cone lit, the formula, padding
    receptive_field_costs.stack_costs(...)                parameters of the dilated stack vs one plain conv;
                                                          the generator's queues
    receptive_field_plots.training_window(...)            windows of R + T samples, stride T, loss on the last T
    receptive_field_measure.measure_receptive_field(...)  |d logits_t / d x_{t-j}| against j for a loaded
                                                          (or random) model
    receptive_field_timing.generation_cost(...)           naive vs cached generation timed on this machine as R grows

The graph and the counts come from core.cone; the measurements run the real model and generators. The graph
embeds every output's cone (receptive_field_svg), so hovering or clicking an output lights its cone in the browser
without a request to the server; changing the controls or the output-t slider asks the server once.
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from core import cone
from core.model_store import ModelStore
from pages.receptive_field_controls import STORY, config_from_controls, diagram_length, story_step
from pages.receptive_field_costs import stack_costs
from pages.receptive_field_measure import RANDOM, measure_receptive_field, wavenet_choices
from pages.receptive_field_plots import MAX_OUTPUT_T, output_slider, receptive_field_diagram, training_window
from pages.receptive_field_svg import CONE_CSS, CONE_JS
from pages.receptive_field_timing import generation_cost

# (kernel size, stacks, layers per stack, dilation pattern, K_in, what it is)
PRESETS = [
    (2, 1, 10, "exponential", 1, "the talk's stack: K=2, dilations 1..512, R = 1,024"),
    (2, 2, 9, "exponential", 1, "the bundled audio model: dilations 1..256 twice, R = 1,023"),
    (2, 1, 10, "constant", 1, "no dilation: ten layers of K=2 see only 11 samples"),
    (3, 2, 4, "linear", 2, "K=3, linear dilations 1..4 twice, K_in=2: R = 42"),
    (2, 3, 10, "exponential", 1, "the WaveNet paper: 1..512 three times, R = 3,070"),
]


def build(store: ModelStore) -> None:
    """Lay out the receptive-field page inside the current Blocks context and wire its events."""
    defaults = dict(kernel_size=2, stacks=1, layers_per_stack=4, pattern="exponential", custom_dilations="1, 2, 4, 8",
                    input_kernel_size=1)
    config = config_from_controls(**defaults)
    last = diagram_length(config) - 1
    first_cone, first_formula, first_padding = receptive_field_diagram(*defaults.values(), last)
    gr.Markdown("## Receptive field\nHow far back a WaveNet sees: each dilated causal conv layer adds (K−1)·d "
                "samples, so the field grows exponentially with depth while the weights grow linearly. Change the "
                "stack and hover an output: its cone lights up down to the inputs it depends on.")
    story = gr.Radio(list(STORY), value=None, label="a short story: pick a step, then hover the outputs")
    story_md = gr.Markdown(elem_id="rf-story")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            kernel = gr.Slider(2, 5, value=defaults["kernel_size"], step=1, label="kernel size K")
            stacks = gr.Slider(1, 4, value=defaults["stacks"], step=1, label="stacks")
            layers = gr.Slider(1, 10, value=defaults["layers_per_stack"], step=1, label="layers per stack")
            pattern = gr.Radio(list(cone.PATTERNS), value=defaults["pattern"], label="dilation pattern",
                               info="exponential 1, 2, 4, …; linear 1, 2, 3, …; constant 1, 1, …")
            custom = gr.Textbox(defaults["custom_dilations"], label="custom dilations",
                                info="one stack, repeated `stacks` times; used when the pattern is custom "
                                     "(Enter to apply)")
            k_in = gr.Slider(1, 5, value=defaults["input_kernel_size"], step=1, label="input kernel size K_in")
        with gr.Column(scale=3):
            formula = gr.Markdown(first_formula, elem_id="rf-formula")
            # Built wide, so API calls may ask for any output of any config; narrowed on page load.
            output_t = gr.Slider(0, MAX_OUTPUT_T, value=last, step=1, label="output t",
                                 info="whose cone to light up; below R − 1 the cone reaches the padding")
            cone_plot = gr.HTML(first_cone, label="dilated causal convolution graph (levels × time)",
                                elem_id="rf-graph", css_template=CONE_CSS, js_on_load=CONE_JS)
    config_inputs = [kernel, stacks, layers, pattern, custom, k_in]
    # Presets set no custom dilations: the textbox redraws on Enter or blur only, not when a preset fills it.
    gr.Examples([list(p[:5]) for p in PRESETS], [kernel, stacks, layers, pattern, k_in],
                example_labels=[p[5] for p in PRESETS], label="presets: click one to load its stack")
    story.input(story_step, story, [*config_inputs, story_md], api_name="receptive_field_story",
                show_progress="hidden")
    gr.on([c.input for c in config_inputs], lambda: (None, ""), None, [story, story_md], api_visibility="private",
          show_progress="hidden")  # the controls no longer show a step of the story

    gr.Markdown("### Parameters: dilated stack vs one plain causal convolution")
    channels = gr.Slider(1, 256, value=64, step=1, label="channels (C_res = C_dil)")
    params_md, queues_first = stack_costs(*defaults.values(), 64, 1)
    parameters = gr.Markdown(params_md)

    gr.Markdown("### Measured receptive field\nThe gradient of the logits at t with respect to the input at t − j, "
                "against j, over the analytic cone (shaded). Nonzero exactly on the cone — yet most of it sits at "
                "the smallest lags.")
    choices = wavenet_choices(store)
    with gr.Row():
        model = gr.Dropdown(choices, value=RANDOM, label="model", scale=5, allow_custom_value=True)
        refresh = gr.Button("↻ Refresh", scale=0, min_width=110)
        measure = gr.Button("Measure", variant="primary", scale=1)
    measured_md = gr.Markdown("Measuring the random model…")
    measured_plot = gr.Plot(label="|d logits_t / d x_{t−j}| against j")

    gr.Markdown("### Training windows")
    targets = gr.Slider(1, 2048, value=16, step=1, label="targets T per window")
    first_window, first_window_md = training_window(*defaults.values(), 16)
    window_md = gr.Markdown(first_window_md)
    window_plot = gr.Plot(first_window, label="the first windows of a sequence")

    gr.Markdown("### Input padding vs layer padding\nBoth put R − 1 zeros in front in total. Input padding does it "
                "once, in front of the input, and every conv shrinks the sequence; the values in front of t = 0 are "
                "then computed from zeros (not zero themselves). Layer padding — what this library does — pads every "
                "conv's input with its own (K−1)·d zeros, so each level keeps length T and the cached generator's "
                "queues can start as exactly those zeros. The two agree from t = R − 1 on, where no cone reaches "
                "padding.")
    padding_plot = gr.Plot(first_padding, label="each level's 8 outputs and the zeros the next conv reads in front")

    gr.Markdown("### Fast generation: the queues")
    batch = gr.Slider(1, 64, value=1, step=1, label="batch B")
    queues = gr.Markdown(queues_first)
    cost_button = gr.Button("Time naive vs cached generation on this machine")
    cost_md = gr.Markdown()
    cost_plot = gr.Plot(label="seconds per sample as R grows", visible=False)  # shown by the first run

    gr.on(None, lambda: gr.Slider(maximum=last, value=last), None, output_t, api_visibility="private",
          show_progress="hidden")  # inputs None: on page load only
    changed = gr.on([c.change for c in (kernel, stacks, layers, pattern, k_in)] + [custom.submit, custom.blur],
                    output_slider, config_inputs, output_t, api_visibility="private", trigger_mode="always_last",
                    show_progress="hidden")
    changed.success(receptive_field_diagram, [*config_inputs, output_t], [cone_plot, formula, padding_plot],
                    api_name="receptive_field_diagram", show_progress="hidden").success(
        stack_costs, [*config_inputs, channels, batch], [parameters, queues], api_name="stack_costs",
        show_progress="hidden").success(
        training_window, [*config_inputs, targets], [window_plot, window_md], api_name="training_window",
        show_progress="hidden")
    output_t.input(receptive_field_diagram, [*config_inputs, output_t], [cone_plot, formula, padding_plot],
                   api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    gr.on([channels.change, batch.change], stack_costs, [*config_inputs, channels, batch], [parameters, queues],
          api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    targets.change(training_window, [*config_inputs, targets], [window_plot, window_md], api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden")
    measure.click(partial(measure_receptive_field, store), [model, *config_inputs], [measured_plot, measured_md],
                  api_name="measure_receptive_field")
    gr.on(None, partial(measure_receptive_field, store, RANDOM, *defaults.values()), None,
          [measured_plot, measured_md], api_visibility="private")  # on page load: the default random model
    refresh.click(lambda current: gr.Dropdown(choices=wavenet_choices(store), value=current), model, model,
                  api_visibility="private")
    cost_button.click(lambda: gr.Plot(visible=True), None, cost_plot, api_visibility="private").then(
        generation_cost, [kernel, channels], [cost_plot, cost_md], api_name="generation_cost",
        concurrency_limit=1)  # timings taken side by side would disturb each other
