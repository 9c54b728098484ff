"""The particle filter's run as inline SVG that answers in the browser: hovering (or clicking, to keep it) a
particle lights its line of ancestors back to step 0 and dims the rest; hovering a step tells its ESS and whether
the filter resampled after it. The run is embedded as data for the page's script; no request to the server.

    surviving_pairs(lineages)        the links of the ancestry tree of the particles alive at the last step
    ancestry(parents, t, n)          the particle at each step 0 .. t that particle n at step t descends from (the
                                     rule the page's script follows, from the resampling indices)
    Scale(run)                       step -> x px and z -> y px of the plot, and back
    particles_html(run)              the drawing: the exact posterior mean ±2σ, the true z, the observations, the
                                     particles (area ∝ weight), the surviving lineages, a dotted line after each
                                     resampling; a caption and a legend

Circles carry data-t (step) and data-n (particle index); the ancestry of the hovered one is given class `lit`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from pages.inline_svg import base_css, data_attribute, loader_js, svg_open
from pages.sequences_filter import FilterRun

WIDTH, LEFT, RIGHT, TOP, PLOT_H, BOTTOM = 900, 46, 8, 8, 330, 34  # px
MAX_R, MIN_R = 7.0, 1.2  # px: the radius of a step's heaviest particle, and of the lightest
HINT = "Hover a particle to light its ancestors back to step 0 (click to keep it); hover a step for its ESS."

LINEAGE_JS = loader_js("pf-root", "run") + """
let circles = null;
const at = (t, n) => {
  if (!circles || circles.root !== root) {
    circles = {root: root, byStep: data.z.map(() => [])};
    root.querySelectorAll('circle.p').forEach((c) => { circles.byStep[+c.dataset.t][+c.dataset.n] = c; });
  }
  return circles.byStep[t][n];
};
const clear = () => {
  root.querySelectorAll('.lit, rect.step.now').forEach((e) => e.classList.remove('lit', 'now'));
  root.classList.remove('focus');
  root.querySelector('polyline.trace').setAttribute('points', '');
};
const showStep = (t) => {
  const col = root.querySelector(`rect.step[data-t="${t}"]`);
  if (col) col.classList.add('now');
  return data.stepText[t];
};
const showParticle = (t, n) => {
  const path = [n];
  for (let s = t; s > 0; s--) path.unshift(data.parents[s - 1][path[0]]);
  const points = path.map((k, s) => {
    const c = at(s, k);
    c.classList.add('lit');
    return c.getAttribute('cx') + ',' + c.getAttribute('cy');
  });
  root.querySelector('polyline.trace').setAttribute('points', points.join(' '));
  root.classList.add('focus');
  root.dataset.lineage = path.join(',');
  return `Particle ${n} at step ${t} (z = ${data.z[t][n].toFixed(3)}, weight ${data.w[t][n].toFixed(3)}) ` +
    `descends from particle ${path[0]} at step 0. ` + showStep(t);
};
const show = (key) => {
  if (!load()) return;
  clear();
  root.dataset.lineage = '';
  let text = data.hint;
  if (key) {
    const [t, n] = key.split(':').map(Number);
    text = n === undefined ? showStep(t) : showParticle(t, n);
  }
  root.querySelector('.pf-now').textContent = text;
  root.dataset.shown = key;
};
element.addEventListener('mouseover', (e) => {
  const c = e.target.closest('circle.p');
  const s = e.target.closest('rect.step');
  if (c) show(c.dataset.t + ':' + c.dataset.n);
  else if (s) show(s.dataset.t);
});
element.addEventListener('click', (e) => {
  const c = e.target.closest('circle.p');
  if (c && load()) { root.dataset.pinned = c.dataset.t + ':' + c.dataset.n; show(root.dataset.pinned); }
});
element.addEventListener('mouseleave', () => { if (load()) show(root.dataset.pinned); });
"""

LINEAGE_CSS = base_css("pf-root") + """
.pf-root .band { fill: rgba(127, 127, 127, 0.25); stroke: none; }
.pf-root .mean { fill: none; stroke: currentColor; stroke-width: 2; }
.pf-root .truth { fill: none; stroke: currentColor; stroke-width: 1; stroke-dasharray: 2 3; }
.pf-root .obs { stroke: #ff7f0e; stroke-width: 1.6; }
.pf-root .axis { stroke: #888; stroke-width: 0.8; }
.pf-root .resample { stroke: rgba(214, 39, 40, 0.6); stroke-width: 1.5; stroke-dasharray: 3 3; }
.pf-root rect.step { fill: transparent; }
.pf-root rect.step.now { fill: rgba(127, 127, 127, 0.18); }
.pf-root circle.p { fill: #1f77b4; fill-opacity: 0.45; cursor: pointer; }
.pf-root line.surv { stroke: #d62728; stroke-width: 1.2; stroke-opacity: 0.8; pointer-events: none; }
.pf-root.focus circle.p { fill-opacity: 0.12; }
.pf-root.focus line.surv { stroke-opacity: 0.15; }
.pf-root circle.p.lit { fill: #d62728; fill-opacity: 1; stroke: currentColor; stroke-width: 1; }
.pf-root polyline.trace { fill: none; stroke: #d62728; stroke-width: 2.5; pointer-events: none; }
.pf-root .pf-now { margin-top: 4px; min-height: 2.6em; }
.pf-root .pf-legend span { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px;
  vertical-align: middle; }
"""


def ancestry(parents: np.ndarray, t: int, n: int) -> list[int]:
    """(T - 1, N) parents (particle n at step s + 1 descends from parents[s, n] at step s), a particle n at step t
    -> [its ancestor's index at step 0, ..., at step t - 1, n]."""
    path = [n]
    for s in range(t - 1, -1, -1):
        path.append(int(parents[s, path[-1]]))
    return path[::-1]


def surviving_pairs(lineages: np.ndarray) -> list[tuple[int, int, int]]:
    """(T, N) lineages (core.inference.smc.lineages) -> the ancestry tree of the particles alive at the last step
    as (t, ancestor's index at t, descendant's index at t + 1), each distinct link once: the lines merge going
    back in time as the resamplings make the survivors share ancestors."""
    return [(t, int(a), int(b)) for t in range(len(lineages) - 1)
            for a, b in np.unique(lineages[t : t + 2].T, axis=0)]


@dataclass
class Scale:
    """The plot's axes: T steps across WIDTH - LEFT - RIGHT px, z from lo (bottom) to hi (top) over PLOT_H px."""

    steps: int
    lo: float
    hi: float

    @classmethod
    def of(cls, run: FilterRun) -> Scale:
        """Wide enough for the particles, the ±2σ band, the true z and the observations, with 5% to spare."""
        values = np.concatenate([run.particles.ravel(), run.mean + 2 * run.std, run.mean - 2 * run.std,
                                 run.latents, run.observations])
        lo, hi = float(values.min()), float(values.max())
        pad = 0.05 * max(hi - lo, 1e-6)
        return cls(len(run.mean), lo - pad, hi + pad)

    @property
    def column(self) -> float:
        return (WIDTH - LEFT - RIGHT) / self.steps

    def x(self, t: float) -> float:
        return LEFT + (t + 0.5) * self.column

    def y(self, z: np.ndarray | float) -> np.ndarray | float:
        return TOP + (self.hi - z) / (self.hi - self.lo) * PLOT_H

    def z(self, y: np.ndarray | float) -> np.ndarray | float:
        """The inverse of y: the z drawn at y px."""
        return self.hi - (y - TOP) / PLOT_H * (self.hi - self.lo)


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.2f}" for x, y in zip(xs, ys, strict=True))


def _step_text(run: FilterRun, t: int) -> str:
    n = run.particles.shape[1]
    did = "the filter resampled after it" if run.resampled[t] else "no resampling after it"
    return f"Step {t}: ESS {run.ess[t]:.1f} of N = {n} (threshold {run.threshold * n:g}); {did}."


def _axes(scale: Scale) -> list[str]:
    bottom = TOP + PLOT_H
    parts = [f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>',
             f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>']
    raw = (scale.hi - scale.lo) / 5
    step = min((m * 10 ** np.floor(np.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    for z in np.arange(np.ceil(scale.lo / step), np.floor(scale.hi / step) + 1) * step:  # round numbers
        parts.append(f'<text x="{LEFT - 4}" y="{scale.y(z) + 4:.1f}" text-anchor="end">{z + 0:g}</text>')
    tick = max(1, -(-scale.steps // 12))
    for t in range(0, scale.steps, tick):
        parts.append(f'<text x="{scale.x(t):.1f}" y="{bottom + 13}" text-anchor="middle">{t}</text>')
    parts.append(f'<text x="{(LEFT + WIDTH) / 2:.0f}" y="{bottom + 28}" text-anchor="middle">step t</text>')
    parts.append(f'<text x="10" y="{TOP + PLOT_H / 2:.0f}" text-anchor="middle">z</text>')
    return parts


def particles_html(run: FilterRun) -> str:
    """The run as inline SVG with its caption and legend, the particles'
    z, weights and resampling indices embedded in data-run for the page's script (LINEAGE_JS)."""
    scale = Scale.of(run)
    steps, n = run.particles.shape
    xs = np.array([scale.x(t) for t in range(steps)])
    height = TOP + PLOT_H + BOTTOM
    parts = [svg_open(WIDTH, height, "particles over time with their ancestry"), *_axes(scale)]
    band = np.concatenate([xs, xs[::-1]]), np.concatenate([scale.y(run.mean + 2 * run.std),
                                                           scale.y(run.mean - 2 * run.std)[::-1]])
    parts.append(f'<polygon class="band" points="{_points(*band)}"><title>posterior ±2σ</title></polygon>')
    for t in range(steps):
        parts.append(f'<rect class="step" data-t="{t}" x="{xs[t] - scale.column / 2:.1f}" y="{TOP}" '
                     f'width="{scale.column:.1f}" height="{PLOT_H}"/>')
    for t in np.flatnonzero(run.resampled):  # between step t's weighing and step t + 1's proposal
        x = scale.x(t + 0.5)
        parts.append(f'<line class="resample" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}"/>')
    parts.append(f'<polyline class="mean" points="{_points(xs, scale.y(run.mean))}"/>')
    parts.append(f'<polyline class="truth" points="{_points(xs, scale.y(run.latents))}"/>')
    for x, y in zip(xs, scale.y(run.observations), strict=True):
        parts.append(f'<path class="obs" d="M{x - 4:.1f},{y - 4:.1f}l8,8m0,-8l-8,8"/>')
    ys = scale.y(run.particles)
    parts += [f'<line class="surv" x1="{xs[t]:.1f}" y1="{ys[t, a]:.2f}" x2="{xs[t + 1]:.1f}" '
              f'y2="{ys[t + 1, b]:.2f}"/>' for t, a, b in surviving_pairs(run.lineages)]
    radius = np.maximum(MIN_R, MAX_R * np.sqrt(run.weights / run.weights.max(axis=1, keepdims=True)))
    for t in range(steps):
        parts += [f'<circle class="p" data-t="{t}" data-n="{k}" cx="{xs[t]:.1f}" cy="{ys[t, k]:.2f}" '
                  f'r="{radius[t, k]:.2f}"/>' for k in range(n)]
    parts.append('<polyline class="trace" points=""/></svg>')
    data = {"parents": run.parents.tolist(), "z": np.round(run.particles, 4).tolist(),
            "w": np.round(run.weights, 4).tolist(), "stepText": [_step_text(run, t) for t in range(steps)],
            "hint": HINT}
    legend = "".join(f'<span style="{style}"></span>{what}' for style, what in (
        ("background: rgba(127, 127, 127, 0.4)", "exact posterior mean ±2σ (line: mean)"),
        ("border-top: 2px dotted currentColor; height: 0", "true z"), ("background: #ff7f0e", "observations x"),
        ("background: #1f77b4; border-radius: 50%", "particles (area ∝ weight)"),
        ("background: #d62728; height: 2px", "surviving lineages"),
        ("border-left: 2px dashed rgba(214, 39, 40, 0.6)", "the filter resampled")))
    return (f'<div class="pf-root" data-pinned="" data-shown="" data-lineage=""{data_attribute("run", data)}>'
            + "".join(parts) + f'<div class="pf-now">{html.escape(HINT)}</div>'
            f'<div class="pf-legend">{legend}</div></div>')
