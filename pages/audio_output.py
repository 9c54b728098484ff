"""The audio page's output area and the life of one run of Generate.

    build_status()                     the status line: above the page's columns, sticky at the top of the
                                       window so it stays in view; hidden until a run starts
    OutputArea / build_output_area()   one tab per variation: a player that receives the audio chunk by
                                       chunk as it is made, a figure (waveform over spectrogram) and a WAV
                                       download; all hidden until a run has something to show
    Runs                               the runs a Cancel may stop: per browser session, read between chunks
    on_page() / finished()             the buttons (and results) as a run starts and after it

A run streams: each chunk the model makes goes to its variation's player as it comes (Gradio encodes the
chunks into one HLS stream), so pressing play during generation plays what exists and nothing restarts.
The figure and the WAV come with the last update, also when the run is cancelled.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import gradio as gr

MAX_VARIATIONS = 4
# Per variation slot, the handler's outputs: the WAV download, the streaming player, the figure.
OUTPUTS_PER_VARIATION = 3
# The status block itself (Gradio's wrapper of the HTML) sticks to the top of the window: a css_template
# would style only the HTML inside it, which cannot stick beyond the wrapper. Gradio's container hides its
# overflow, which makes it the (never scrolling) box a sticky element sticks in; `clip` hides the same
# overflow without that.
STATUS_TEMPLATE = """<style>#audio-status { position: sticky; top: 0; z-index: 20;
  background: var(--background-fill-primary); border-bottom: 1px solid var(--border-color-primary); }
.gradio-container:has(#audio-status) { overflow: clip; }</style>
${value}"""


def build_status() -> gr.HTML:
    """The status line, in the current Blocks context: hidden, and sticky once shown."""
    return gr.HTML("", html_template=STATUS_TEMPLATE, visible=False, elem_id="audio-status")


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
                                     visible=False, elem_id=f"figure-{i + 1}")
                    wav = gr.File(label="download WAV", visible=False, elem_id=f"download-{i + 1}")
                tabs.append(tab)
                slots.append([wav, player, figure])
    return OutputArea(column, status, tabs, slots)


def visible_tabs(variations: float) -> list[gr.Tab]:
    """The tabs' updates for a variation count."""
    return [gr.Tab(visible=i < variations) for i in range(MAX_VARIATIONS)]


class Runs:
    """Runs of the Generate handler that a Cancel may stop, by the browser session they serve.

    The handler opens a run as it starts; Cancel marks the session's open runs; the handler reads its mark
    between chunks, stops, and still gives what it made; it closes the run as it ends. A Cancel when
    nothing runs does nothing, so it cannot stop the next run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[str | None, bool]] = {}  # run id -> (session, cancelled)

    def open(self, session: str | None) -> str:
        run = uuid.uuid4().hex
        with self._lock:
            self._runs[run] = (session, False)
        return run

    def cancel(self, session: str | None) -> None:
        with self._lock:
            for run, (owner, _) in self._runs.items():
                if owner == session:
                    self._runs[run] = (owner, True)

    def cancelled(self, run: str) -> bool:
        with self._lock:
            return self._runs.get(run, (None, False))[1]

    def close(self, run: str) -> None:
        with self._lock:
            self._runs.pop(run, None)


def as_started(first: Sequence) -> list:
    """The Generate handler's first update (status, then per slot: WAV, player, figure) as the page shows a run
    start: the status line shown, each slot's WAV and figure cleared and hidden (its player shows first), then
    Generate off (a second click cannot queue a second run), Cancel on, and the output area shown."""
    status, *slots = first
    hidden = [v if j % OUTPUTS_PER_VARIATION == 1 else gr.update(value=None, visible=False)  # 1: the player
              for j, v in enumerate(slots)]
    return [gr.update(value=status, visible=True), *hidden, gr.Button(interactive=False), gr.Button(interactive=True),
            gr.Column(visible=True)]


def on_page(updates: Iterable[Sequence]) -> Iterator[list]:
    """The Generate handler's updates as the page gives them: the first `as_started`, then each with the
    start's three extra outputs (Generate, Cancel, the area) left as they are."""
    for i, update in enumerate(updates):
        yield as_started(update) if i == 0 else [*update, gr.skip(), gr.skip(), gr.skip()]


def finished(*files: str | None) -> list:
    """After a run (done, cancelled or failed): Generate on, Cancel off, and each slot's WAV and figure shown
    where the run gave that slot a WAV."""
    return [gr.Button(interactive=True), gr.Button(interactive=False),
            *(gr.update(visible=bool(f)) for f in files for _ in range(2))]
