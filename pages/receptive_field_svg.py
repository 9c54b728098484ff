"""The receptive-field diagram as inline SVG: the dilated stack (inputs at the bottom, layers up, outputs on top)
with every output's cone embedded as data, so that hovering or clicking an output lights its cone in the browser.

    shown_levels(config)           the levels drawn: all of them, or, for a tall stack of repeated identical stacks,
                                   the inputs, the input layer, one row for the repeats below and the last stack
    cone_offsets(config)           the cone of the newest output (core.cone.cone), as runs of offsets from it
    output_cone(config, runs, t)   one output's cone from those runs: the real positions of every level as runs,
                                   and at which levels it reads zero padding (equal to core.cone.cone(.., padding=True))
    diagram_html(config, t_out)    the SVG with t_out's cone lit, every output's cone embedded in data-cones

The cone of an output does not depend on where it is, only on how close it is to the start: cone.cone of the
newest output (whose cone reaches no padding) shifted to t, cut at the first real position of each level, is the
cone of t; the levels below a real node reading padding are where it reaches the zeros.

Columns: 0 is the zero padding in front of a level, 1 the start symbol (inputs only), then the positions 0 .. T-1,
`bucket` positions a column when T is wider than MAX_COLS (a column is lit when any of its positions is).
"""

from __future__ import annotations

import html

from core import cone
from core.models.wavenet import WaveNetConfig
from pages.inline_svg import base_css, data_attribute, loader_js, svg_open
from pages.receptive_field_controls import diagram_length

MAX_COLS = 160  # position columns drawn, at most; wider time axes put several positions in a column
MAX_LEVELS = 14  # taller stacks of repeated stacks draw the repeats below the last one as one row
EDGE_MAX_COLS = 64  # the graph's edges are drawn when every position has its own column and there are this few
ROW_H, LABEL_W, GRID_W, CELL_W_MAX = 24, 170, 900, 28  # px

CONE_JS = loader_js("rf-root", "cones") + """
const show = (key) => {
  const d = load();
  const c = d && d.cones[key];
  if (!c) return;
  const lit = c.levels.map((runs) => {
    const s = new Set();
    for (let i = 0; i < runs.length; i += 2) for (let x = runs[i]; x <= runs[i + 1]; x++) s.add(x);
    return s;
  });
  root.querySelectorAll('rect.node').forEach((n) => {
    n.classList.toggle('lit', lit[+n.dataset.level].has(+n.dataset.col));
    n.classList.toggle('now', n.classList.contains('out') && +n.dataset.col === c.col);
  });
  root.querySelectorAll('line.edge').forEach((e) => {
    const l = +e.dataset.level;
    e.classList.toggle('lit', lit[l].has(+e.dataset.col) && lit[l - 1].has(+e.dataset.pcol));
  });
  root.querySelector('.rf-now').textContent = c.caption;
  root.dataset.shown = key;
};
element.addEventListener('mouseover', (e) => {
  const n = e.target.closest('rect.out');
  if (n) show(n.dataset.col);
});
element.addEventListener('click', (e) => {
  const n = e.target.closest('rect.out');
  if (n && load()) { root.dataset.pinned = n.dataset.col; show(n.dataset.col); }
});
element.addEventListener('mouseleave', () => { if (load()) show(root.dataset.pinned); });
"""

CONE_CSS = base_css("rf-root") + """
.rf-root rect.node { fill: #e8e8e8; stroke: #bbb; stroke-width: 0.5; }
.rf-root rect.node.pad { fill: #ffffff; stroke-dasharray: 2 2; }
.rf-root rect.node.lit { fill: #d62728; stroke: #7f0000; }
.rf-root rect.node.pad.lit { fill: #7f7f7f; }
.rf-root rect.out { cursor: pointer; }
.rf-root rect.out.now { stroke: #000; stroke-width: 2.5; }
.rf-root line.edge { stroke: #d9d9d9; stroke-width: 0.6; }
.rf-root line.edge.lit { stroke: #d62728; stroke-width: 1.4; }
.rf-root .rf-now { margin-top: 4px; min-height: 1.4em; }
.rf-root .rf-note { color: #666; font-size: 0.9em; }
"""


def repeat_period(dilations: list[int]) -> int:
    """The length of the shortest stack whose repeats make `dilations` (len(dilations) when it is not repeated)."""
    n = len(dilations)
    return next(p for p in range(1, n + 1) if n % p == 0 and dilations == dilations[:p] * (n // p))


def shown_levels(config: WaveNetConfig) -> list[tuple[int, str]]:
    """(level, label) of each row drawn, bottom first; levels as in core.cone (0 inputs, 1 input layer, 1 + l layer l).

    When there are more than MAX_LEVELS levels and the dilations repeat one stack, the stacks below the last one
    are drawn as the one row of their top level, labelled with the repeat count ("×3").
    """
    names = cone.level_names(config)
    dilations = list(config.dilations)
    period = repeat_period(dilations)
    repeats = len(dilations) // period
    if len(names) <= MAX_LEVELS or repeats < 2:
        return list(enumerate(names))
    below = repeats - 1
    one = f"{dilations[0]}" + (f" … {dilations[period - 1]}" if period > 1 else "")
    collapsed = (1 + below * period, f"stacks 1–{below} (×{below}, d = {one})" if below > 1
                 else f"stack 1 (d = {one})")
    return [(0, names[0]), (1, names[1]), collapsed,
            *[(level, names[level]) for level in range(2 + below * period, len(names))]]


def runs_of(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as runs (first, last) of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for p in sorted(positions):
        if runs and p == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], p)
        else:
            runs.append((p, p))
    return runs


def cone_offsets(config: WaveNetConfig) -> list[list[tuple[int, int]]]:
    """Per level, bottom first: the newest output's cone (core.cone.cone) as runs of offsets from that output (<= 0).

    The newest output, R + MARGIN - 1, reaches no padding: its cone is the whole graph's, and every output's cone
    is a shift of it cut at the start.
    """
    newest = diagram_length(config) - 1
    return [[(a - newest, b - newest) for a, b in runs_of(list(level))] for level in cone.cone(config, newest)]


def output_cone(config: WaveNetConfig, offsets: list[list[tuple[int, int]]],
                t: int) -> tuple[list[list[tuple[int, int]]], list[bool]]:
    """(real, padding) of the output at t: real[level] the runs of real positions in its cone (START included at
    level 0), padding[level] whether the cone reads zero padding in front of that level.

    Equal to core.cone.cone(config, t, padding=True) split at cone.first_real(level) (tests/test_receptive_field_svg).
    """
    real: list[list[tuple[int, int]]] = []
    for level, runs in enumerate(offsets):
        lo = cone.first_real(level)
        real.append([(max(a + t, lo), b + t) for a, b in runs if b + t >= lo])
    top = len(offsets) - 1
    padding = [False] * (top + 1)
    for level in range(1, top + 1):
        if real[level]:  # the lowest real node reads the lowest positions below
            lowest_parent = min(cone.parents(config, level, real[level][0][0]))
            padding[level - 1] = lowest_parent < cone.first_real(level - 1)
    return real, padding


def _caption(t: int, real: list[list[tuple[int, int]]], padding: list[bool]) -> str:
    inputs = [(max(a, 0), b) for a, b in real[0] if b >= 0]
    count = sum(b - a + 1 for a, b in inputs)
    seen = f"{count:,} inputs x_{inputs[0][0]} … x_{inputs[-1][1]}" if inputs else "no input"
    start = " and the start symbol" if real[0] and real[0][0][0] == cone.START else ""
    zeros = f", and zero padding at {sum(padding)} level{'s' * (sum(padding) != 1)}" if any(padding) else ""
    return f"The output at t = {t} (the logits of x_{t}) depends on {seen}{start}{zeros}."


def diagram_data(config: WaveNetConfig, t_out: int) -> dict:
    """What the SVG draws and its script reads: bucket (positions per column), cols (columns in all), levels
    [(level, label)], and cones: for "init" (t_out) and for every output column (its newest output), the lit
    columns of each shown level as flat runs [first, last, first, last, ...], the output's column and a caption."""
    length = diagram_length(config)
    bucket = -(-length // MAX_COLS)
    levels = shown_levels(config)
    offsets = cone_offsets(config)

    def col(p: int) -> int:
        return 1 if p == cone.START else 2 + p // bucket

    def entry(t: int) -> dict:
        real, padding = output_cone(config, offsets, t)
        lit = []
        for level, _ in levels:
            runs = [(0, 0)] if padding[level] else []
            for a, b in real[level]:
                first, last = col(a), col(b)
                if runs and first <= runs[-1][1] + 1:
                    runs[-1] = (runs[-1][0], max(last, runs[-1][1]))
                else:
                    runs.append((first, last))
            lit.append([x for run in runs for x in run])
        return {"t": t, "col": col(t), "levels": lit, "caption": _caption(t, real, padding)}

    outputs = {c: min(length - 1, (c - 2) * bucket + bucket - 1) for c in range(2, 2 + -(-length // bucket))}
    cones = {str(c): entry(t) for c, t in outputs.items()}
    cones["init"] = entry(t_out)
    return {"bucket": bucket, "cols": 2 + len(outputs), "length": length, "levels": levels, "cones": cones}


def diagram_html(config: WaveNetConfig, t_out: int) -> str:
    """The diagram as inline SVG with the cone of the output at t_out lit, a caption and a note; every output's
    cone embedded in data-cones for the page's script (CONE_JS), which redraws on hover and click."""
    data = diagram_data(config, t_out)
    cols, bucket, levels = data["cols"], data["bucket"], data["levels"]
    init = data["cones"]["init"]
    w = max(3, min(CELL_W_MAX, GRID_W // cols))
    n = len(levels)
    width, height = LABEL_W + cols * w + 4, n * ROW_H + 20
    lit = [set() for _ in levels]
    for i, runs in enumerate(init["levels"]):
        for a, b in zip(runs[::2], runs[1::2], strict=True):
            lit[i].update(range(a, b + 1))

    def x(c: int) -> float:
        return LABEL_W + c * w + w / 2

    def y(i: int) -> float:
        return (n - 1 - i) * ROW_H + ROW_H / 2

    parts = [svg_open(width, height, "dilated causal convolution graph")]
    if bucket == 1 and cols - 2 <= EDGE_MAX_COLS:
        for i in range(1, n):
            level, below = levels[i][0], levels[i - 1][0]
            if level - below != 1:
                continue  # collapsed stacks: no single layer of edges between these rows
            for t in range(cols - 2):
                for p in cone.parents(config, level, t):
                    if p >= cone.first_real(below):
                        pc = p + 2  # one position a column: START (-1) is column 1
                        on = " lit" if t + 2 in lit[i] and pc in lit[i - 1] else ""
                        parts.append(f'<line class="edge{on}" data-level="{i}" data-col="{t + 2}" data-pcol="{pc}" '
                                     f'x1="{x(t + 2):.1f}" y1="{y(i):.1f}" x2="{x(pc):.1f}" y2="{y(i - 1):.1f}"/>')
    for i, (level, label) in enumerate(levels):
        parts.append(f'<text x="4" y="{y(i) + 4:.0f}">{html.escape(label)}</text>')
        top = i == n - 1
        for c in range(cols):
            if (c == 0 and top) or (c == 1 and level != 0):
                continue  # nothing reads the outputs' padding; only the inputs have a start symbol
            kind = "node pad" if c == 0 else "node out" if top else "node"
            kind += (" lit" if c in lit[i] else "") + (" now" if top and c == init["col"] else "")
            what = ("zero padding" if c == 0 else "start symbol" if c == 1
                    else f"t = {(c - 2) * bucket}" + (f" … {(c - 1) * bucket - 1}" if bucket > 1 else ""))
            parts.append(f'<rect class="{kind}" data-level="{i}" data-col="{c}" x="{LABEL_W + c * w + 1}" '
                         f'y="{y(i) - ROW_H / 2 + 3:.0f}" width="{w - 2}" height="{ROW_H - 6}">'
                         f'<title>{html.escape(label)}: {what}</title></rect>')
    tick = max(1, -(-(cols - 2) // 12))
    for c in range(2, cols, tick):
        parts.append(f'<text x="{x(c):.1f}" y="{n * ROW_H + 12}" text-anchor="middle">{(c - 2) * bucket}</text>')
    parts.append("</svg>")
    note = ("Hover an output (top row) to light its cone; click to keep it. The first column is the zero padding "
            "in front of each level, the second the start symbol.")
    if bucket > 1:
        note += f" Each column holds {bucket} positions: it is lit when any of them is in the cone."
    if any(level - below != 1 for (level, _), (below, _) in zip(levels[1:], levels, strict=False)):
        note += " The stacks below the last one are drawn as one row: their top layer."
    return (f'<div class="rf-root" data-pinned="init" data-shown="init"{data_attribute("cones", data)}>'
            + "".join(parts)
            + f'<div class="rf-now">{html.escape(init["caption"])}</div><div class="rf-note">{note}</div></div>')
