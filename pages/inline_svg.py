"""Diagrams that answer in the browser: inline SVG in a gr.HTML with its data embedded and a little JavaScript
(js_on_load) that redraws on hover and click, with no request to the server. Shared by the receptive-field cone,
the recurrence grid and the particle filter's lineages.

    svg_open(width, height, label)   the <svg> tag: scales down to the page's width, named for screen readers
    data_attribute(name, value)      ` data-NAME="..."`: value as JSON, escaped to sit in an HTML attribute
    loader_js(root_class, name)      the script's first lines: load() finds the diagram's root in `element` and
                                     parses its data-NAME once per render (a handler's output swaps the markup)
    base_css(root_class)             the SVG's sizing and font; its text in the page's colour (light or dark theme)
"""

from __future__ import annotations

import html
import json


def svg_open(width: float, height: float, label: str) -> str:
    """The opening <svg> tag of a width x height px drawing (a viewBox: it shrinks with a narrow page)."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{html.escape(label, quote=True)}">')


def data_attribute(name: str, value: object) -> str:
    """` data-NAME="<value as compact JSON, HTML-escaped>"`, which the script reads as root.dataset.NAME."""
    return f' data-{name}="{html.escape(json.dumps(value, separators=(",", ":")), quote=True)}"'


def loader_js(root_class: str, name: str) -> str:
    """JavaScript defining `root` and `data` and `load()`: the element of class root_class inside the component and
    its parsed data-NAME, re-read only when the component's markup was replaced; null before the first drawing."""
    return f"""
let root = null, data = null;
const load = () => {{
  const r = element.querySelector('.{root_class}');
  if (r !== root) {{ root = r; data = r ? JSON.parse(r.dataset.{name}) : null; }}
  return data;
}};
"""


def base_css(root_class: str) -> str:
    """CSS every diagram shares: the SVG no wider than the page, an 11 px font, its text in the theme's colour."""
    return f"""
.{root_class} svg {{ max-width: 100%; height: auto; font: 11px sans-serif; }}
.{root_class} svg text {{ fill: currentColor; }}
"""
