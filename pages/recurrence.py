"""The recurrence page: which states a stack of recurrent layers computes when, which it holds for backprop, and
how far back the gradient of one step's loss reaches through each layer (the wayback seed's four animations).

This module lays the page out and wires its events. Each section is a plain handler, in a module of its own:

    recurrence_controls.preset_controls(name)            the seed's four animations as control values
    recurrence_grid.recurrence_schedule(...)             the time x layer grid (inline SVG) and the numbers, drawn
                                                         from Schedule.grid, the schedule the model itself follows
    recurrence_measure.measure_gradient_reach(...)       |d loss_t / d input at t - k| for stored wayback checkpoints
    recurrence_experiment.experiment_view()              stack against wayback on the same audio, as measured

The grid embeds every loss step's frame, so moving the step slider, the ◀ ▶ buttons and hovering a loss cell
redraw it in the browser, without a request to the server; changing the schedule asks the server once.
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from core.model_store import ModelStore
from pages.recurrence_controls import MAX_CHUNK, MAX_STEPS, PRESETS, periods_for_layout, preset_controls
from pages.recurrence_experiment import experiment_view
from pages.recurrence_grid import GRID_CSS, GRID_JS, recurrence_schedule
from pages.recurrence_measure import WRT, measure_gradient_reach, wayback_choices

DEFAULT = "multi-scale truncated"
# Tell the grid's script which step to draw: the grid listens for this event (GRID_JS); no server call.
SHOW_STEP_JS = """(t) => {
  const root = document.querySelector('#recurrence-grid .rec-root');
  if (root) root.dispatchEvent(new CustomEvent('recurrence-step', {detail: t, bubbles: true}));
}"""
STEPS_OF_GRID = "(document.querySelector('#recurrence-grid .rec-root') || {dataset: {steps: 1}}).dataset.steps"


def step_slider(steps: float, step: float) -> gr.Slider:
    """The step slider for a grid of `steps` steps, keeping `step` where it still fits."""
    last = max(0, int(steps) - 1)
    return gr.Slider(maximum=last, value=min(max(0, int(step)), last))


def build(store: ModelStore) -> None:
    """Lay out the recurrence page inside the current Blocks context and wire its events."""
    layout0, periods0, bounds0, chunk0, vskip0, carry0, steps0 = preset_controls(DEFAULT)
    first_grid, first_numbers = recurrence_schedule(layout0, periods0, bounds0, chunk0, vskip0, carry0, steps0,
                                                    steps0 - 1)
    gr.Markdown("## Recurrence\nA stack of recurrent layers, unrolled: time runs to the right, layers go up. Each "
                "box is one update of one layer. Training by truncated backprop keeps some of them in memory and "
                "sends the gradient of each step's loss back only so far. The *wayback* layout updates higher "
                "layers less often, so the same memory reaches much further back in time. Move the step (or "
                "hover a loss cell) to see what the loss at that step reaches.")
    preset = gr.Radio([(f"{name}: {line}", name) for name, line in PRESETS.items()], value=DEFAULT,
                      label="the wayback seed's four animations")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            layout = gr.Radio(["stack", "wayback"], value=layout0, label="layout",
                              info="stack: every layer every step; wayback: layer i every periods[0]·…·periods[i]")
            periods = gr.Textbox(periods0, label="periods", info="one per layer, bottom first (Enter to apply)")
            boundaries = gr.Textbox(bounds0, label="boundaries",
                                    info="own steps each layer backprops through; 'none' never cuts (Enter)")
            chunk = gr.Slider(1, MAX_CHUNK, value=chunk0, step=1, label="chunk size (samples per step)")
            with gr.Row():
                vskip = gr.Checkbox(vskip0, label="vskip (read every layer)")
                carry = gr.Checkbox(carry0, label="carry (else restart from above)")
            steps = gr.Slider(4, MAX_STEPS, value=steps0, step=1, label="steps drawn")
        with gr.Column(scale=3):
            with gr.Row():
                back = gr.Button("◀ step", scale=0, min_width=80)
                step = gr.Slider(0, steps0 - 1, value=steps0 - 1, step=1, label="step t (its loss is backpropagated)",
                                 scale=5)
                forward = gr.Button("step ▶", scale=0, min_width=80)
            grid = gr.HTML(first_grid, elem_id="recurrence-grid", css_template=GRID_CSS, js_on_load=GRID_JS)
            numbers = gr.Markdown(first_numbers, elem_id="recurrence-numbers")
    controls = [layout, periods, boundaries, chunk, vskip, carry]

    redraw = dict(fn=recurrence_schedule, inputs=[*controls, steps, step], outputs=[grid, numbers],
                  show_progress="hidden")
    preset.input(preset_controls, preset, [*controls, steps], api_name="recurrence_preset").success(
        lambda n: step_slider(n, n - 1), steps, step, api_visibility="private").success(
        **redraw, api_name="recurrence_schedule")
    layout.input(periods_for_layout, [layout, periods, boundaries], periods, api_visibility="private").success(
        **redraw, api_visibility="private")
    changed = [periods.submit, periods.blur, boundaries.submit, boundaries.blur, chunk.input, vskip.input,
               carry.input, steps.input]
    gr.on(changed, step_slider, [steps, step], step, api_visibility="private", trigger_mode="always_last",
          show_progress="hidden").success(**redraw, api_visibility="private", trigger_mode="always_last")
    gr.on([c.input for c in controls], lambda: None, None, preset,
          api_visibility="private", show_progress="hidden")  # the controls no longer show a preset
    step.change(None, step, None, js=SHOW_STEP_JS)  # drawn in the browser from the embedded frames
    back.click(None, step, step, js="(t) => Math.max(0, t - 1)")
    forward.click(None, step, step, js=f"(t) => Math.min({STEPS_OF_GRID} - 1, t + 1)")

    gr.Markdown("### Measured: how far back does the gradient reach?\nFor stored wayback-family checkpoints (stack "
                "and wayback layouts), the gradient of the loss at one step with respect to the input at earlier "
                "steps, by autograd over two of the model's segments (at most a few hundred steps). It is exactly "
                "zero beyond the truncation. In a wayback model the input's gradient stops at the bottom layer's "
                "boundary, while the higher layers' states get gradient from much further back: choose *each "
                "layer's states* to see it.")
    choices = wayback_choices(store)
    with gr.Row():
        models = gr.Dropdown(choices, value=[p for _, p in choices[:2]], multiselect=True, allow_custom_value=True,
                             label="checkpoints", scale=5)
        refresh = gr.Button("↻ Refresh", scale=0, min_width=110)
    wrt = gr.Radio([(label, key) for key, label in WRT.items()], value="input", label="gradient with respect to")
    measure = gr.Button("Measure", variant="primary")
    measured_md = gr.Markdown("No wayback checkpoints in this app's folders yet." if not choices else "")
    measured_plot = gr.Plot(label="|d loss_t / d input at t − k| against k (samples, log)")
    measure.click(partial(measure_gradient_reach, store), [models, wrt], [measured_plot, measured_md],
                  api_name="measure_gradient_reach")
    refresh.click(lambda current: gr.Dropdown(choices=wayback_choices(store), value=current), models, models,
                  api_visibility="private")

    gr.Markdown("### The experiment: stack against wayback on the same audio\nTwo layouts of one model (the same "
                "parameters), trained on the same audio for the same number of samples, with about the same memory "
                "per training step: the wayback layout spends it on a gradient that reaches 4x further back. "
                "Hover a bar for its memory, span and training time.")
    figure, table = experiment_view()
    gr.Plot(figure, label="test bits per sample by layout", elem_id="recurrence-experiment")
    gr.Markdown(table)
