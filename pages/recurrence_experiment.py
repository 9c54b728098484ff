"""The experiment section of the recurrence page: stack against wayback on the same audio, as measured.

    experiment_view(path)    (figure, Markdown): test bits per sample per data set and layout, with the
                             parameters, memory per step, gradient span and training time of each run

The numbers are the ones scripts/wayback_experiment.py wrote to docs/wayback_experiment.json; this module
only draws them.
"""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "wayback_experiment.json"
LAYOUT_COLOURS = {"stack": "#1f77b4", "wayback": "#d62728"}


def experiment_view(path: Path = RESULTS) -> tuple[go.Figure, str]:
    """(grouped bar figure of test bits per sample, Markdown table and reading); a note if there are no results."""
    fig = go.Figure()
    if not path.is_file():
        return fig, ("No results yet: run `python scripts/wayback_experiment.py` (it trains four small models, "
                     "about an hour on a CPU).")
    results = json.loads(path.read_text())
    rows = results["rows"]
    datasets = sorted({r["dataset"] for r in rows})
    for layout, colour in LAYOUT_COLOURS.items():
        mine = {r["dataset"]: r for r in rows if r["layout"] == layout}
        fig.add_bar(name=layout, x=datasets, y=[mine[d]["test_bits_per_sample"] if d in mine else None
                                                for d in datasets],
                    marker_color=colour,
                    customdata=[[mine[d]["peak_step_memory_mib"], mine[d]["gradient_span_ms"],
                                 mine[d]["training_seconds"] / 60] if d in mine else [None] * 3 for d in datasets],
                    hovertemplate=(f"{layout}<br>%{{x}}: %{{y:.3f}} bits per sample<br>memory per step "
                                   "%{customdata[0]:.1f} MiB<br>gradient span %{customdata[1]:g} ms<br>"
                                   "trained %{customdata[2]:.0f} min<extra></extra>"))
    fig.update_layout(barmode="group", yaxis_title="test bits per sample (lower is better)",
                      xaxis_title="data set", height=340, margin=dict(l=60, r=20, t=30, b=50),
                      legend_title_text="layout")
    return fig, table_markdown(rows, results.get("datasets", {}))


def table_markdown(rows: list[dict], about: dict[str, str]) -> str:
    """The results as a Markdown table, then what each data set is."""
    lines = ["| data | layout | parameters | test bits per sample | memory per step | longest gradient span | "
             "training time |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["layout"])):
        lines.append(f"| {r['dataset']} | {r['layout']} | {r['parameters']:,} | {r['test_bits_per_sample']:.3f} | "
                     f"{r['peak_step_memory_mib']:.1f} MiB | {r['gradient_span_samples']:,} samples "
                     f"({r['gradient_span_ms']:g} ms) | {r['training_seconds'] / 60:.0f} min |")
    lines += ["", *[f"*{name}*: {text}." for name, text in sorted(about.items())]]
    return "\n".join(lines)
