"""The look every page's Plotly figure shares, readable in Gradio's light and dark themes alike.

    TEMPLATE                      transparent backgrounds (the page shows through), text and axes in a mid-grey that
                                  reads on white and on near-black, faint grid lines, Plotly's usual trace colours
    NEUTRAL                       that grey, for lines a figure would otherwise draw in black (a reference line)
    use_theme_neutral_template()  make TEMPLATE the default of every figure made afterwards (pages/__init__.py does)
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

NEUTRAL = "#7f7f7f"  # contrast about 4:1 on white and 5:1 on Gradio's dark background
GRID = "rgba(127, 127, 127, 0.25)"
CLEAR = "rgba(0, 0, 0, 0)"
NAME = "studio"


_AXIS = dict(gridcolor=GRID, zerolinecolor=GRID, linecolor=NEUTRAL, tickcolor=NEUTRAL)
TEMPLATE = go.layout.Template(layout=dict(
    paper_bgcolor=CLEAR, plot_bgcolor=CLEAR, font=dict(color=NEUTRAL), xaxis=_AXIS, yaxis=_AXIS,
    legend=dict(bgcolor=CLEAR), colorway=pio.templates["plotly"].layout.colorway))  # no dark text, no light fills


def use_theme_neutral_template() -> None:
    """Register TEMPLATE as "studio" and make it Plotly's default, for every figure made after this call."""
    pio.templates[NAME] = TEMPLATE
    pio.templates.default = NAME
