"""The audio page's output area and the life of one run of Generate.

    build_status() / status_line()     the status line: above the page's columns, sticky at the top of the
                                       window so it stays in view; hidden until a run starts
    OutputArea / build_output_area()   one tab per variation: a player that receives the audio chunk by
                                       chunk as it is made, a figure (waveform over spectrogram) and a WAV
                                       download; all hidden until a run has something to show
    Runs                               the runs a Cancel may stop: an id per click, a flag read between chunks
    running() / idle()                 the Generate and Cancel buttons during and after a run

A run streams: each chunk the model makes goes to its variation's player as it comes (Gradio encodes the
chunks into one HLS stream), so pressing play during generation plays what exists and nothing restarts.
The figure and the WAV come with the last update, also when the run is cancelled.
"""

from __future__ import annotations

import threading
import uuid
from typing import NamedTuple

import gradio as gr

MAX_VARIATIONS = 4
# Per variation slot, the handler's outputs: the WAV download, the streaming player, the figure.
OUTPUTS_PER_VARIATION = 3
STATUS_CSS = """
position: sticky; top: 0; z-index: 20; padding: 6px 10px; min-height: 1.5em;
background: var(--background-fill-primary); border-bottom: 1px solid var(--border-color-primary);
"""


def build_status() -> gr.HTML:
    """The status line, in the current Blocks context: hidden, and sticky once shown."""
    return gr.HTML("", css_template=STATUS_CSS, padding=False, visible=False, elem_id="audio-status")


def status_line(text: str) -> gr.HTML:
    """The status line's update: shown, saying `text` (HTML)."""
    return gr.HTML(text, visible=True)


class OutputArea(NamedTuple):
    column: gr.Column  # hidden until the first run starts
    status: gr.HTML
    tabs: list[gr.Tab]  # one per variation slot; those beyond the chosen count are hidden
    slots: list[list[gr.components.Component]]  # per slot: [WAV file, player, figure]

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What the Generate handler yields to: status, then each slot's file, player and figure."""
        return [self.status, *(c for slot in self.slots for c in slot)]


def build_output_area(status: gr.HTML, variations: int) -> OutputArea:
    """Lay the output area out in the current Blocks context, with `variations` tabs shown."""
    with gr.Column(visible=False) as column:
        tabs, slots = [], []
        with gr.Tabs():
            for i in range(MAX_VARIATIONS):
                # render_children: a player in a tab not shown still takes its stream
                with gr.Tab(f"Variation {i + 1}", visible=i < variations, render_children=True) as tab:
                    player = gr.Audio(label=f"variation {i + 1}", streaming=True, autoplay=i == 0,
                                      interactive=False, elem_id=f"player-{i + 1}")
                    figure = gr.Plot(label="waveform (grey: primer, blue: continuation) over spectrogram",
                                     visible=False)
                    wav = gr.File(label="download WAV", visible=False)
                tabs.append(tab)
                slots.append([wav, player, figure])
    return OutputArea(column, status, tabs, slots)


def visible_tabs(variations: float) -> list[gr.Tab]:
    """The tabs' updates for a variation count."""
    return [gr.Tab(visible=i < variations) for i in range(MAX_VARIATIONS)]


class Runs:
    """Runs of the Generate handler that a Cancel may stop.

    The click opens a run (an id the page keeps in a gr.State); Cancel marks it; the handler reads the mark
    between chunks, stops, and still gives what it made; the handler's end closes it. A Cancel for a run
    already over does nothing, so it cannot stop the next one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled: dict[str, bool] = {}

    def open(self) -> str:
        run = uuid.uuid4().hex
        with self._lock:
            self._cancelled[run] = False
        return run

    def cancel(self, run: str | None) -> None:
        with self._lock:
            if run in self._cancelled:
                self._cancelled[run] = True

    def cancelled(self, run: str | None) -> bool:
        with self._lock:
            return self._cancelled.get(run, False)

    def close(self, run: str | None) -> None:
        with self._lock:
            self._cancelled.pop(run, None)


def running() -> tuple[gr.Button, gr.Button]:
    """Generate off (a second click cannot queue a second run), Cancel on."""
    return gr.Button(interactive=False), gr.Button(interactive=True)


def idle() -> tuple[gr.Button, gr.Button]:
    """Generate on, Cancel off."""
    return gr.Button(interactive=True), gr.Button(interactive=False)
