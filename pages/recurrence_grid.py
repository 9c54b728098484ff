"""The time x layer grid of the recurrence page, drawn from `Schedule.grid` (the model's own schedule).

    schedule_frames(schedule, steps)     every loss step's frame: who updates, who is held, whom the gradient reaches
    grid_html(frames, step)              the grid as inline SVG, drawn for one step, with every frame embedded as
                                         data so that the page's script can redraw any step without the server
    numbers_markdown(schedule)           memory (states held) and the longest gradient span, in steps and samples
    recurrence_schedule(...)             the endpoint: controls -> (grid HTML, numbers Markdown)

A cell is one update of one layer. At step t (the slider; hovering a loss cell previews its step) it is filled
    future  not computed yet (after t)
    past    computed
    lit     the gradient of the loss at t reaches it (Schedule.grid's `gradient`)
and has a blue border when it is held: kept in memory for backprop, as an update of the layer since its current
gradient block began (without it, a loss later in the block could not reach it).
"""

from __future__ import annotations

import html

import gradio as gr

from core.errors import StudioError
from core.models.wayback_schedule import Schedule
from pages.checks import whole_in
from pages.inline_svg import base_css, data_attribute, loader_js, svg_open
from pages.recurrence_controls import MAX_STEPS, schedule_from_controls

CELL_H = 22  # px, one layer's row
LABEL_W = 72  # px, the row labels on the left
GRID_W = 900  # px the columns share, at most CELL_W_MAX each
CELL_W_MAX = 26

# Classes the page's script gives the cells; the same rule as cell_class below, applied to the embedded frames.
GRID_JS = loader_js("rec-root", "frames") + """
const show = (t) => {
  const d = load();
  if (!d) return;
  t = Math.max(0, Math.min(d.steps - 1, Math.round(+t)));
  root.querySelectorAll('rect.cell').forEach((c) => {
    const i = +c.dataset.layer, s = +c.dataset.step;
    const kind = d.lit[t][i][s] === '1' ? 'lit' : s <= t ? 'past' : 'future';
    c.setAttribute('class', 'cell ' + kind + (d.held[t][i][s] === '1' ? ' held' : ''));
  });
  root.querySelectorAll('rect.loss').forEach((c) => {
    c.setAttribute('class', +c.dataset.loss === t ? 'loss now' : 'loss');
  });
  root.querySelector('.rec-now').textContent = d.now[t];
  root.dataset.shown = t;
};
element.addEventListener('mouseover', (e) => {
  const c = e.target.closest('rect.loss');
  if (c) show(c.dataset.loss);
});
element.addEventListener('mouseleave', () => { if (load()) show(root.dataset.step); });
element.addEventListener('recurrence-step', (e) => {
  if (load()) { root.dataset.step = e.detail; show(e.detail); }
});
"""

GRID_CSS = base_css("rec-root") + """
.rec-root rect.cell { stroke: #555; stroke-width: 0.5; }
.rec-root rect.future { fill: #ffffff; stroke: #bbb; }
.rec-root rect.past { fill: #d9d9d9; }
.rec-root rect.held { stroke: #2171b5; stroke-width: 2.5; }
.rec-root rect.lit { fill: #d62728; }
.rec-root rect.loss { fill: #fdd0a2; stroke: #e6550d; stroke-width: 0.5; cursor: pointer; }
.rec-root rect.loss.now { fill: #e6550d; }
.rec-root .rec-now { margin-top: 4px; min-height: 2.6em; }
.rec-root .rec-legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px;
  vertical-align: middle; border: 1px solid #555; }
"""


def held_grid(schedule: Schedule, steps: int, t: int) -> list[list[bool]]:
    """[layer][step]: the update is kept for backprop at step t, i.e. it lies in [block_start(layer, t), t]
    (Schedule.block_start: where the layer's current gradient block began). At most states_held[layer] per row."""
    updates = schedule.update_grid(steps)
    return [[updates[i][s] and schedule.block_start(i, t) <= s <= t for s in range(steps)]
            for i in range(schedule.depth)]


def _bits(row: list[bool]) -> str:
    return "".join("1" if b else "0" for b in row)


def _now_text(schedule: Schedule, t: int, gradient: list[list[bool]], held: list[list[bool]]) -> str:
    """One line about step t: how far back the loss's gradient reaches in each layer, and the states held."""
    parts = []
    for i in reversed(range(schedule.depth)):
        lit = [s for s, on in enumerate(gradient[i]) if on]
        parts.append(f"layer {i}: {len(lit)} update{'s' * (len(lit) != 1)}"
                     + (f" back to step {lit[0]} ({t - lit[0] + 1} steps)" if lit else ""))
    held_now = sum(map(sum, held))
    return (f"Loss at step {t}: its gradient reaches " + "; ".join(parts)
            + f". States held now: {held_now}.")


def schedule_frames(schedule: Schedule, steps: int) -> dict:
    """Every frame of the picture, one per loss step t in 0 .. steps-1, from Schedule.grid(steps, t):

    steps, depth, updates [layer][step] bool, order [step] (update order), lit[t][layer] and held[t][layer]
    as '0'/'1' strings over the steps, now[t] the line of numbers for step t.
    """
    first = schedule.grid(steps, 0)
    lit, held, now = [], [], []
    for t in range(steps):
        gradient = schedule.grid(steps, t)["gradient"]
        kept = held_grid(schedule, steps, t)
        lit.append([_bits(row) for row in gradient])
        held.append([_bits(row) for row in kept])
        now.append(_now_text(schedule, t, gradient, kept))
    return {"steps": steps, "depth": schedule.depth, "updates": first["updates"], "order": first["order"],
            "lit": lit, "held": held, "now": now}


def cell_class(frames: dict, t: int, layer: int, step: int) -> str:
    """The class of one update's cell at step t (the same rule the page's script applies): its fill (lit, past
    or future) and, when it is held for backprop, 'held' (a blue border)."""
    kind = "lit" if frames["lit"][t][layer][step] == "1" else "past" if step <= t else "future"
    return f"cell {kind}" + (" held" if frames["held"][t][layer][step] == "1" else "")


def grid_html(frames: dict, step: int) -> str:
    """The grid for step `step` as inline SVG (top layer first, the loss row at the bottom), a line of numbers
    and a legend; every frame is embedded in data-frames for the page's script."""
    n, depth = frames["steps"], frames["depth"]
    w = max(6, min(CELL_W_MAX, GRID_W // n))
    width, height = LABEL_W + n * w + 4, (depth + 2) * CELL_H + 18
    parts = [svg_open(width, height, "time by layer grid")]
    for row, layer in enumerate(reversed(range(depth))):
        y = row * CELL_H
        parts.append(f'<text x="4" y="{y + CELL_H * 0.7:.0f}">layer {layer}</text>')
        parts.append(f'<line x1="{LABEL_W}" x2="{LABEL_W + n * w}" y1="{y + CELL_H / 2}" y2="{y + CELL_H / 2}" '
                     'stroke="#e0e0e0"/>')
        for s in range(n):
            if frames["updates"][layer][s]:
                rank = frames["order"][s].index(layer) + 1
                parts.append(f'<rect class="{cell_class(frames, step, layer, s)}" data-layer="{layer}" '
                             f'data-step="{s}" x="{LABEL_W + s * w + 1}" y="{y + 2}" width="{w - 2}" '
                             f'height="{CELL_H - 4}"><title>layer {layer}, step {s}: update {rank} of '
                             f'{len(frames["order"][s])} this step</title></rect>')
    y = depth * CELL_H + 4
    parts.append(f'<text x="4" y="{y + CELL_H * 0.7:.0f}">loss</text>')
    for s in range(n):
        now = " now" if s == step else ""
        parts.append(f'<rect class="loss{now}" data-loss="{s}" x="{LABEL_W + s * w + 1}" y="{y + 2}" '
                     f'width="{w - 2}" height="{CELL_H - 4}"><title>the loss at step {s}</title></rect>')
    tick = max(1, -(-n // 12))
    for s in range(0, n, tick):
        parts.append(f'<text x="{LABEL_W + s * w + w / 2:.1f}" y="{(depth + 2) * CELL_H + 10}" '
                     f'text-anchor="middle">{s}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span style="background:{colour}"></span>{what}' for colour, what in (
        ("#ffffff", "not computed yet"), ("#d9d9d9", "computed"), ("#ffffff; border: 3px solid #2171b5",
        "held for backprop (border)"), ("#d62728", "gets gradient from the loss"), ("#e6550d", "the loss")))
    return (f'<div class="rec-root" data-step="{step}" data-shown="{step}" data-steps="{n}"'
            f'{data_attribute("frames", frames)}>'
            + "".join(parts) + f'<div class="rec-now">{html.escape(frames["now"][step])}</div>'
            f'<div class="rec-legend">{legend}</div></div>')


def numbers_markdown(schedule: Schedule) -> str:
    """Memory (states held for backprop, per layer and in all) and the longest gradient span, as Markdown."""
    held = schedule.states_held
    per_layer = ", ".join(f"layer {i}: {'all' if h is None else h}" for i, h in enumerate(held))
    memory = ("**grows with the sequence** (a layer is never cut)" if schedule.memory is None
              else f"**{schedule.memory}** states held for backprop")
    span = ("**the whole sequence** (never cut)" if schedule.segment_steps is None
            else f"**{schedule.segment_steps}** steps = **{schedule.longest_span_samples}** samples "
                 f"(chunk size {schedule.chunk_size})")
    return f"Memory: {memory} ({per_layer}) · longest gradient span: {span}"


def recurrence_schedule(layout: str, periods: str | None, boundaries: str | None, chunk_size: float, vskip: bool,
                        carry: bool, steps: float, step: float) -> tuple[str, str]:
    """(grid HTML, numbers Markdown) for the controls, drawn over `steps` steps at the loss step `step`."""
    try:
        schedule = schedule_from_controls(layout, periods, boundaries, chunk_size, vskip, carry)
        n = whole_in("steps drawn", steps, 1, MAX_STEPS)
        t = whole_in("step", step, 0, n - 1)
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    return grid_html(schedule_frames(schedule, n), t), numbers_markdown(schedule)
