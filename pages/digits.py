"""The digits page: class-conditional MNIST samples, infill of a test or drawn digit, surprise, p(y | x).

Handlers, each testable without a browser (core.digits does the modelling):

    sample_digits(store, model, digit, count, temperature, seed)        a grid of samples of one class
    infill_digits(store, model, source, index, drawing, mask, painted,  the original, what the model observed
                  digit, count, temperature, seed)                      and N completions; the surprise heatmap;
                                                                        the class posterior

The page's events run them through `as_png_file`, which writes the grid to a PNG file of the
request's own: an array would be cached by Gradio under a hash of its content, one file that two
users drawing the same digits with the same seed would both write at once.

Images go to the browser as lossless PNG grids: tile j of a grid starts at column
GAP + j * (SCALE * 28 + GAP) of row GAP (and the next row of tiles SCALE * 28 + GAP lower), and
pixel (r, c) of a digit fills the SCALE x SCALE block at (SCALE r, SCALE c) of its tile.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from functools import lru_cache, partial, wraps
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from core import digits as dg
from core.errors import ConfigError, StudioError
from core.generation import default_method
from core.model_store import ModelStore
from core.models.wavenet import WaveNet
from pages.checks import number_in, require, seed_or_none, whole_in
from pages.examples import asset, run_after_example
from pages.model_picker import metrics_text, model_picker

SCALE, GAP, COLUMNS = 4, 4, 8  # pixels per digit pixel, pixels between tiles, tiles per grid row
MAX_COUNT = 16
CANVAS = 280  # drawing and painting canvases: 10 x 10 screen pixels per digit pixel
SOURCES = ("test digit", "drawing")
HIDDEN_TINT = np.array([120, 20, 20], np.uint8)  # the pixels the model re-draws, in the "observed" tile
BRUSH = 14  # gr.Brush size: a stroke ~28 px wide on the CANVAS; a digit drawn ~200 px tall is framed to 20
#            pixels, so its strokes are ~2.8 pixels wide, about as thick as MNIST's pen
POSTERIOR_NOTE = ("p(y | x) is Bayes' rule over the model's own likelihoods p(x | y), each class equally likely a "
                  "priori. It is overconfident on drawings unlike the training digits: the class whose model "
                  "finds the drawing least unlikely takes nearly all the mass, even when no class fits it well. "
                  "The surprise map and the bits per pixel say how unlike MNIST the digit is.")
# The sketchpad starts with no tool chosen ("select the draw tool to start"): choose its brush once it is shown,
# so that the first drag draws.
PICK_BRUSH_JS = """(source) => {
  if (source !== 'drawing') return;
  let tries = 0;
  const pick = () => {
    const brush = document.querySelector('#digit-sketchpad button[aria-label="Brush"]');
    if (brush) brush.click(); else if (++tries < 40) setTimeout(pick, 50);
  };
  pick();
}"""
AUTO_CLASS = "its own: the test digit's label, or the likeliest class of a drawing"
# (image in assets/digits, pixels the model observes, what it is): loaded onto the canvas as a drawing.
EXAMPLES = [
    ("test_0_7.png", "top half", "MNIST test digit 0 (a 7): complete its bottom half"),
    ("test_1_2.png", "left half", "MNIST test digit 1 (a 2): complete its right half"),
    ("test_3_0.png", "bottom half", "MNIST test digit 3 (a 0): complete its top half"),
    ("drawn_4.png", "top half", "a drawn 4: complete its bottom half"),
]


def digit_models(store: ModelStore) -> list[dict]:
    """The store's entries that model 28 x 28 digits with 10 classes (scanline WaveNet or Gated PixelCNN)."""
    found = []
    for m in store.list_models():
        c = m["config"]
        if c.get("n_classes") != dg.N_CLASSES:
            continue
        if m["model_type"] == "pixelcnn" and (c["height"], c["width"]) == (dg.SIDE, dg.SIDE):
            found.append(m)
        elif m["model_type"] == "wavenet" and list(c.get("extra", {}).get("image_shape", [])) == [dg.SIDE, dg.SIDE]:
            found.append(m)
    return found


def model_summary(entry: dict | None) -> str:
    if entry is None:
        return ("No digit model found. Train one on the Train page (MNIST) or with "
                "`python -m core.train --config configs/digits_wavenet.json --run-dir runs/digits`, then press ↻.")
    kind = "Gated PixelCNN" if entry["model_type"] == "pixelcnn" else "scanline WaveNet"
    text = (f"**{entry['title']}** (`{entry['name']}`) — {kind}, {entry['config']['quantization_levels']} grey "
            f"levels, {entry['parameters']:,} parameters.")
    if entry["metrics"]:
        text += "\n\nMetrics: " + metrics_text(entry["metrics"], entry["config"])
    return text


@lru_cache(maxsize=1)
def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 10,000 test digits, uint8 (N, 28, 28), and their labels (N,) (downloaded once, then cached)."""
    from core.data.mnist_sources import load_mnist

    splits = load_mnist()
    return splits["x_test"].reshape(-1, dg.SIDE, dg.SIDE), splits["y_test"].astype(np.int64)


# -- images in, images out ------------------------------------------------------------------------


def grid_image(tiles: np.ndarray, columns: int = COLUMNS) -> np.ndarray:
    """Tiles (N, 28, 28) grey or (N, 28, 28, 3) RGB uint8 -> one RGB uint8 image, SCALE x enlarged, GAP apart."""
    tiles = tiles if tiles.ndim == 4 else np.repeat(tiles[..., None], 3, axis=3)
    n, side = len(tiles), dg.SIDE * SCALE
    cols = min(columns, n)
    rows = -(-n // cols)
    out = np.full((GAP + rows * (side + GAP), GAP + cols * (side + GAP), 3), 255, np.uint8)
    for j, tile in enumerate(tiles):
        top, left = GAP + (j // cols) * (side + GAP), GAP + (j % cols) * (side + GAP)
        out[top : top + side, left : left + side] = tile.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
    return out


def drawing_to_digit(drawing: dict | None) -> np.ndarray:
    """A sketchpad value -> uint8 (28, 28) white-on-black digit, framed as MNIST's are.

    The ink is the drawn layers' alpha (or, without layers, the darkness of the composite). Like
    MNIST, the ink's bounding box is scaled to fit 20 x 20 and its centre of mass is put at the centre.
    """
    ink = _ink(drawing)
    if ink is None or ink.max() == 0:
        raise ConfigError("the drawing is empty: draw a digit on the sketchpad first")
    rows, cols = np.nonzero(ink)
    box = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = 20 / max(box.shape)
    size = (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale)))
    small = np.asarray(Image.fromarray(box).resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    total = small.sum()
    if total == 0:
        raise ConfigError("the drawing is too faint to read: draw a bolder digit")
    yy, xx = np.indices(small.shape)
    top = int(round(dg.SIDE / 2 - (yy * small).sum() / total))
    left = int(round(dg.SIDE / 2 - (xx * small).sum() / total))
    top, left = np.clip(top, 0, dg.SIDE - small.shape[0]), np.clip(left, 0, dg.SIDE - small.shape[1])
    digit = np.zeros((dg.SIDE, dg.SIDE))
    digit[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.clip(np.round(digit), 0, 255).astype(np.uint8)


def painted_region(painted: dict | None) -> np.ndarray | None:
    """An image-editor value -> bool (28, 28): True under any paint (None when nothing was painted)."""
    alpha = _layers_alpha(painted)
    if alpha is None:
        return None
    cells = Image.fromarray(alpha).resize((dg.SIDE, dg.SIDE), Image.Resampling.BOX)
    return np.asarray(cells) > 0


def editor_background(digit: np.ndarray) -> dict:
    """The painting canvas's value for a digit: the digit enlarged to CANVAS x CANVAS, nothing painted."""
    big = np.repeat(digit.repeat(CANVAS // dg.SIDE, 0).repeat(CANVAS // dg.SIDE, 1)[..., None], 3, axis=2)
    return {"background": big, "layers": [], "composite": big}


def as_png_file(handler: Callable[..., tuple]) -> Callable[..., Iterator[tuple]]:
    """`handler` for a page event: its first result, an image (H, W, 3) uint8, written to a PNG file and
    replaced by the file's path. A generator that yields once, so the file's temporary folder lives until
    Gradio has copied it into its cache (which it does atomically)."""

    @wraps(handler)  # Gradio reads the signature (the progress argument) through __wrapped__
    def run(*args, **kwargs) -> Iterator[tuple]:
        image, *rest = handler(*args, **kwargs)
        with tempfile.TemporaryDirectory(prefix="studio-digits-") as folder:
            path = Path(folder) / "digits.png"
            Image.fromarray(image).save(path)
            yield str(path), *rest

    return run


# -- handlers ------------------------------------------------------------------------------------


def sample_digits(store: ModelStore, model: str | None, digit: float, count: float, temperature: float,
                  seed: float | None, progress: gr.Progress = gr.Progress()) -> tuple[np.ndarray, str]:
    """The Sample handler: `count` digits of class `digit`; (grid image (H, W, 3) uint8, status)."""
    try:
        net = _model(store, model)
        digit = whole_in("digit", digit, 0, 9)
        count = whole_in("count", count, 1, MAX_COUNT)
        temperature = number_in("temperature", temperature, 0, 2)
        seed = seed_or_none(seed)
        start = time.perf_counter()
        tokens = dg.sample(net, torch.full((count,), digit), temperature=temperature, seed=seed,
                           progress=_reporter(progress))
        elapsed = time.perf_counter() - start
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    return grid_image(dg.to_images(tokens, net.config.quantization_levels)), \
        f"{count} × {dg.PIXELS} pixels in {elapsed:.2f} s ({_method(net)})."


def infill_digits(store: ModelStore, model: str | None, source: str, index: float, drawing: dict | None, mask: str,
                  painted: dict | None, digit: str | float | None, count: float, temperature: float, seed: float | None,
                  progress: gr.Progress = gr.Progress()) -> tuple[np.ndarray, go.Figure, go.Figure, str]:
    """The Infill handler: keep the `mask` pixels of a test or drawn digit, draw the rest `count` times.

    Returns (grid: original, observed (re-drawn pixels tinted), completions; surprise heatmap of the
    original; class posterior bars; status). `digit` "auto" (or None) means the test digit's label, or
    the likeliest class of a drawing; else a class "0" .. "9".
    """
    try:
        net = _model(store, model)
        require(source in SOURCES, f"source must be one of {SOURCES}, got {source!r}")
        original, label = _original(source, index, drawing)
        keep = dg.observed_mask(mask, painted_region(painted) if mask == "painted region" else None)
        count = whole_in("count", count, 1, MAX_COUNT)
        temperature = number_in("temperature", temperature, 0, 2)
        seed = seed_or_none(seed)
        levels = net.config.quantization_levels
        x = dg.to_tokens(original[None], levels)  # (1, 784)
        posterior = dg.class_posterior(net, x)[0].numpy()
        if digit is None or digit == "auto":
            y = label if label is not None else int(posterior.argmax())
        else:
            y = whole_in("class", int(digit) if isinstance(digit, str) and digit.isdigit() else digit, 0, 9)
        start = time.perf_counter()
        completions = dg.sample(net, torch.full((count,), y), observed=(torch.from_numpy(keep), x),
                                temperature=temperature, seed=seed, progress=_reporter(progress))
        elapsed = time.perf_counter() - start
        bits = dg.surprise_bits(net, x, torch.tensor([y]))[0].numpy()
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    shown = dg.to_images(x, levels)[0]
    observed = np.repeat(shown[..., None], 3, axis=2)
    observed[~keep.reshape(dg.SIDE, dg.SIDE)] = HIDDEN_TINT
    tiles = np.concatenate([np.repeat(shown[None, ..., None], 3, axis=3), observed[None],
                            np.repeat(dg.to_images(completions, levels)[..., None], 3, axis=3)])
    status = (f"Class {y}: kept {int(keep.sum())} pixels, drew {dg.PIXELS - int(keep.sum())} in each of {count} "
              f"completion(s) in {elapsed:.2f} s ({_method(net)}). The original costs {bits.sum():.0f} bits "
              f"({bits.mean():.3f} bits/pixel) under class {y}; p(y | x) peaks at {int(posterior.argmax())} "
              f"({100 * posterior.max():.0f}%).")
    return grid_image(tiles, columns=COLUMNS + 2), surprise_figure(bits, y), posterior_figure(posterior), status


def surprise_figure(bits: np.ndarray, digit: int) -> go.Figure:
    """-log2 p(x_i | x_<i, y) as a 28 x 28 heatmap (trace "surprise", z in bits, row 0 at the top)."""
    fig = go.Figure(go.Heatmap(z=bits.reshape(dg.SIDE, dg.SIDE), colorscale="Inferno", name="surprise",
                               colorbar=dict(title="bits")))
    fig.update_layout(title=f"−log₂ p per pixel, class {digit}: {bits.sum():.0f} bits",
                      height=360, width=400, margin=dict(l=10, r=10, t=40, b=10),
                      yaxis=dict(autorange="reversed", scaleanchor="x", visible=False), xaxis=dict(visible=False))
    return fig


def posterior_figure(posterior: np.ndarray) -> go.Figure:
    """p(y | x) over the ten digits (trace "p(y | x)")."""
    fig = go.Figure(go.Bar(x=[str(d) for d in range(dg.N_CLASSES)], y=posterior, name="p(y | x)"))
    fig.update_layout(title="p(y | x), uniform prior", height=300,
                      margin=dict(l=40, r=10, t=40, b=30), yaxis=dict(range=[0, 1]), xaxis_title="digit")
    return fig


# -- layout -------------------------------------------------------------------------------------


def build(store: ModelStore) -> None:
    """Lay out the digits page inside the current Blocks context and wire its events."""
    gr.Markdown("## Digits\nMNIST digits drawn pixel by pixel in raster order, given the class: by a WaveNet over "
                "the 784-pixel scanline, or a Gated PixelCNN.")
    model = model_picker(store, digit_models, model_summary)
    with gr.Tab("Sample"):
        with gr.Row():
            with gr.Column(scale=1):
                digit = gr.Slider(0, 9, value=3, step=1, label="digit")
                count = gr.Slider(1, MAX_COUNT, value=8, step=1, label="how many")
                temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature", info="0 = greedy")
                seed = gr.Number(0, precision=0, minimum=0, label="seed", info="blank = random")
                sample_button = gr.Button("Sample", variant="primary")
            with gr.Column(scale=2):
                samples = gr.Image(label="samples", type="filepath", interactive=False,
                                   alt_text="the sampled digits, in a grid")
                sample_status = gr.Markdown()
    with gr.Tab("Infill") as infill_tab:
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Radio(list(SOURCES), value=SOURCES[0], label="digit to complete")
                with gr.Row() as test_row:
                    index = gr.Number(0, precision=0, minimum=0, maximum=9999, label="test digit index", scale=4)
                    shuffle = gr.Button("🎲 Random", scale=0, min_width=110)
                # Shown only for the source and mask that need them; a black brush about as thick, once the
                # drawing is framed to 20 x 20 pixels, as MNIST's pen.
                drawing = gr.Sketchpad(label="draw a digit", elem_id="digit-sketchpad", type="numpy", image_mode="RGBA",
                                       visible=False, canvas_size=(CANVAS, CANVAS), fixed_canvas=True, layers=False,
                                       brush=gr.Brush(colors=["#000000"], default_size=BRUSH, color_mode="fixed"))
                mask = gr.Radio(list(dg.MASKS), value="top half", label="pixels the model observes",
                                info="painted region: every pixel except those painted below")
                painted = gr.ImageEditor(label="paint the region to re-draw", type="numpy", image_mode="RGBA",
                                         canvas_size=(CANVAS, CANVAS), fixed_canvas=True, layers=False,
                                         sources=(), transforms=(), visible=False,
                                         brush=gr.Brush(colors=["#ff3030"], default_size=20, color_mode="fixed"))
                examples = gr.Examples(
                    [[SOURCES[1], asset(f"digits/{name}"), observed] for name, observed, _ in EXAMPLES],
                    [source, drawing, mask], example_labels=[label for _, _, label in EXAMPLES],
                    label="examples: click one to complete it with the chosen model")
                i_digit = gr.Dropdown([(AUTO_CLASS, "auto"), *[(str(d), str(d)) for d in range(dg.N_CLASSES)]],
                                      value="auto", label="class to complete it as")
                i_count = gr.Slider(1, MAX_COUNT, value=4, step=1, label="completions")
                i_temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="temperature")
                i_seed = gr.Number(0, precision=0, minimum=0, label="seed", info="blank = random")
                infill_button = gr.Button("Complete", variant="primary")
            with gr.Column(scale=2):
                completions = gr.Image(label="original · observed (red: re-drawn) · completions",
                                       type="filepath", interactive=False,
                                       alt_text="the digit, the pixels the model observed, and its completions")
                infill_status = gr.Markdown()
                with gr.Row():
                    surprise = gr.Plot(label="where the model is surprised")
                    posterior = gr.Plot(label="class posterior (Bayes' rule over the 10 classes)")
                gr.Markdown(POSTERIOR_NOTE)

    def show_on_canvas(source: str, index: float, drawing: dict | None):
        try:
            return editor_background(_original(source, index, drawing)[0])
        except StudioError:
            return None

    sample_button.click(partial(as_png_file(sample_digits), store), [model, digit, count, temperature, seed],
                        [samples, sample_status], api_name="sample_digits")
    infill = partial(as_png_file(infill_digits), store)  # the button's and the examples' event
    infill_button.click(infill,
                        [model, source, index, drawing, mask, painted, i_digit, i_count, i_temperature, i_seed],
                        [completions, surprise, posterior, infill_status], api_name="infill_digits")
    run_after_example(examples, infill,
                      [model, source, index, drawing, mask, painted, i_digit, i_count, i_temperature, i_seed],
                      [completions, surprise, posterior, infill_status])
    source.change(lambda s: (gr.Row(visible=s != "drawing"), gr.Sketchpad(visible=s == "drawing")), source,
                  [test_row, drawing], api_visibility="private", show_progress="hidden").then(
        None, source, None, js=PICK_BRUSH_JS)
    mask.change(lambda m: gr.ImageEditor(visible=m == "painted region"), mask, painted, api_visibility="private",
                show_progress="hidden")
    shuffle.click(lambda: int(np.random.default_rng().integers(10_000)), None, index, api_visibility="private")
    for trigger in (index.change, source.change, drawing.change, infill_tab.select):
        trigger(show_on_canvas, [source, index, drawing], painted, api_visibility="private", show_progress="hidden")


def _model(store: ModelStore, path: str | None) -> torch.nn.Module:
    require(bool(path), "choose a model first")
    net = store.get(path)
    dg.check_digit_model(net)
    return net


def _original(source: str, index: float, drawing: dict | None) -> tuple[np.ndarray, int | None]:
    """The digit to complete, uint8 (28, 28), and its label (None for a drawing)."""
    if source == "drawing":
        return drawing_to_digit(drawing), None
    images, labels = held_out_digits()
    i = whole_in("test digit index", index, 0, len(images) - 1)
    return images[i], int(labels[i])


def _ink(drawing: dict | None) -> np.ndarray | None:
    """uint8 (H, W) ink of a sketchpad value: its layers' alpha where anything is drawn on them, else the
    composite's darkness (an image loaded as the background, such as an example: black on white)."""
    if not drawing:
        return None
    alpha = _layers_alpha(drawing)
    if alpha is not None and alpha.max() > 0:
        return alpha.astype(np.uint8)
    composite = drawing.get("composite")
    if composite is None:
        return None
    grey = np.asarray(Image.fromarray(np.asarray(composite, dtype=np.uint8)).convert("L"))
    return (255 - grey).astype(np.uint8)


def _layers_alpha(value: dict | None) -> np.ndarray | None:
    """The largest alpha over an editor value's RGBA layers, (H, W); None without such layers."""
    layers = [np.asarray(x) for x in (value or {}).get("layers") or [] if x is not None]
    layers = [x for x in layers if x.ndim == 3 and x.shape[2] == 4]
    return np.max([x[..., 3] for x in layers], axis=0) if layers else None


def _reporter(progress: gr.Progress):
    return lambda done, total: progress((done, total), desc="drawing pixels", unit="pixels")


def _method(net: torch.nn.Module) -> str:
    return f"{'WaveNet' if isinstance(net, WaveNet) else 'PixelCNN'}, *{default_method(net)}* generator"
