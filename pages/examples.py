"""Examples the pages offer: the files in assets/ (scripts/make_assets.py makes them, assets/SOURCE.md
says what they are), and a run of the page's own handler once a clicked example has filled the controls.

    asset("audio/chord.wav")                     the absolute path of an example file
    run_after_example(examples, fn, inputs, outputs)   clicking an example fills its inputs, then runs fn

Examples are not cached: what they produce depends on the model chosen in the page's picker (and an
eager cache would run every model when the app starts), and the page's own Generate or Complete
handler runs them, with its progress, warnings and Cancel button.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def asset(relative: str) -> str:
    """The path of a file in assets/ (FileNotFoundError naming it and the script that makes it if missing)."""
    path = ASSETS / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: `python scripts/make_assets.py` makes it")
    return str(path)


def run_after_example(examples: gr.Examples, fn: Callable, inputs: Sequence[gr.components.Component],
                      outputs: Sequence[gr.components.Component], **event_args) -> gr.events.Dependency:
    """Run `fn(*inputs)` into `outputs` after a click on one of `examples` has loaded its values.

    Unlike gr.Examples(run_on_click=True), which passes the handler only the example's own columns,
    this reads every control (the model chosen, the sliders), so an example runs exactly as the
    page's button would. The event is private: the page's button is the API endpoint.
    """
    return examples.load_input_event.then(fn, list(inputs), list(outputs), api_visibility="private", **event_args)
