"""End to end: the digits page's `sample_digits` and `infill_digits` through gradio_client.

The app serves a tiny random scanline WaveNet and a tiny random Gated PixelCNN (4 grey levels) and an
audio model (which the page must refuse). Infill completes real MNIST test digits, and drawings and
painted masks travel as the browser sends them: image-editor values with PNG layers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import pages.digits as page
from core.checkpoints import save_checkpoint
from core.data.mnist import requantise
from core.model_store import ModelStore
from core.models.wavenet import WaveNet
from tests.conftest import serving, tiny_audio_config
from tests.test_digits import tiny_digit_pixelcnn, tiny_digit_wavenet
from tests.test_mnist import real_cache  # noqa: F401  (the fixture: real MNIST, cached once)

LEVELS = 4
TILE = page.SCALE * 28 + page.GAP


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("digit-models")
    save_checkpoint(tiny_digit_wavenet(LEVELS), folder / "wavenet")
    save_checkpoint(tiny_digit_pixelcnn(LEVELS), folder / "pixelcnn")
    save_checkpoint(WaveNet(tiny_audio_config()), folder / "audio")
    return folder


@pytest.fixture(scope="module")
def client(models: Path, real_cache: Path) -> Iterator[Client]:  # noqa: F811
    with serving(models) as url:
        yield Client(url, verbose=False)


def tiles(png: str, n: int, columns: int) -> np.ndarray:
    """The n digits of a page grid, uint8 (n, 28, 28, 3), read back from its PNG."""
    grid = np.asarray(Image.open(png).convert("RGB"))
    out = []
    for j in range(n):
        top, left = page.GAP + (j // columns) * TILE, page.GAP + (j % columns) * TILE
        out.append(grid[top : top + 28 * page.SCALE : page.SCALE, left : left + 28 * page.SCALE : page.SCALE])
    return np.stack(out)


def shown(images: np.ndarray) -> np.ndarray:
    """How the page shows uint8 digits to a LEVELS-level model: requantised, then spread over 0..255."""
    return np.round(requantise(images, LEVELS).astype(float) * 255 / (LEVELS - 1)).astype(np.uint8)


def editor_value(tmp_path: Path, name: str, alpha: np.ndarray) -> dict:
    """An image-editor value as the browser sends it: a white background and one RGBA layer of `alpha` ink."""
    size = alpha.shape[::-1]
    background, layer = tmp_path / f"{name}-bg.png", tmp_path / f"{name}-layer.png"
    Image.new("RGBA", size, "white").save(background)
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., 3] = alpha
    Image.fromarray(rgba, "RGBA").save(layer)
    return {"background": handle_file(str(background)), "layers": [handle_file(str(layer))],
            "composite": handle_file(str(background))}


def test_the_page_lists_only_digit_models(models: Path) -> None:
    names = {m["name"] for m in page.digit_models(ModelStore([models], device="cpu"))}
    assert names == {f"{models.name}/wavenet", f"{models.name}/pixelcnn"}


@pytest.mark.parametrize("model", ["wavenet", "pixelcnn"])
def test_sample_digits_gives_a_seeded_grid_of_digits(client: Client, models: Path, model: str) -> None:
    png, status = client.predict(str(models / model), 3, 5, 1.0, 11, api_name="/sample_digits")
    digits = tiles(png, 5, page.COLUMNS)
    assert set(np.unique(digits)) <= {0, 85, 170, 255}  # 4 levels spread over 0..255
    assert (digits[..., 0] == digits[..., 1]).all()  # grey
    assert "5 × 784 pixels" in status
    again, _ = client.predict(str(models / model), 3, 5, 1.0, 11, api_name="/sample_digits")
    assert np.array_equal(tiles(again, 5, page.COLUMNS), digits)


@pytest.mark.parametrize("model", ["wavenet", "pixelcnn"])
def test_infill_keeps_the_observed_half_of_a_test_digit(client: Client, models: Path, model: str) -> None:
    png, surprise, posterior, status = client.predict(
        str(models / model), "test digit", 7, None, "top half", None, "auto", 3, 1.0, 0, api_name="/infill_digits")
    images, labels = page.held_out_digits()
    original = shown(images[7])
    row = tiles(png, 5, page.COLUMNS + 2)[..., 0]  # original, observed, 3 completions
    assert np.array_equal(row[0], original)
    assert np.array_equal(row[1, :14], original[:14])
    assert (tiles(png, 2, page.COLUMNS + 2)[1, 14:] == page.HIDDEN_TINT).all()
    for completion in row[2:]:
        assert np.array_equal(completion[:14], original[:14])
    assert f"Class {labels[7]}:" in status  # "auto" = the test digit's label
    bars = json.loads(posterior["plot"])["data"][0]
    assert len(bars["x"]) == 10 and abs(sum(page_values(bars["y"])) - 1) < 1e-6
    heat = json.loads(surprise["plot"])["data"][0]
    assert np.asarray(page_values(heat["z"])).size == 784


def page_values(column) -> list:
    from tests.test_app_receptive_field import values

    if isinstance(column, list) and column and isinstance(column[0], (list, dict)):
        return [v for row in column for v in values(row)]
    return values(column)


def test_a_painted_region_is_redrawn_and_everything_else_kept(client: Client, models: Path, tmp_path: Path) -> None:
    alpha = np.zeros((page.CANVAS, page.CANVAS), np.uint8)
    alpha[100:180, 50:150] = 255  # digit rows 10..17, columns 5..14
    painted = editor_value(tmp_path, "paint", alpha)
    png, _, _, status = client.predict(str(models / "wavenet"), "test digit", 3, None, "painted region", painted, "5",
                                       2, 1.0, 1, api_name="/infill_digits")
    region = np.zeros((28, 28), bool)
    region[10:18, 5:15] = True
    original = shown(page.held_out_digits()[0][3])
    row = tiles(png, 4, page.COLUMNS + 2)
    assert (row[1][region] == page.HIDDEN_TINT).all() and np.array_equal(row[1][~region][:, 0], original[~region])
    for completion in row[2:, ..., 0]:
        assert np.array_equal(completion[~region], original[~region])
    assert "Class 5:" in status and f"kept {784 - region.sum()} pixels" in status


def test_a_drawn_digit_is_framed_like_mnist_and_completed(client: Client, models: Path, tmp_path: Path) -> None:
    alpha = np.zeros((page.CANVAS, page.CANVAS), np.uint8)
    alpha[40:240, 120:150] = 255  # a "1": one tall stroke
    drawing = editor_value(tmp_path, "draw", alpha)
    digit = page.drawing_to_digit({"layers": [np.dstack([np.zeros((*alpha.shape, 3), np.uint8), alpha])]})
    rows, cols = np.nonzero(digit)
    assert rows.max() - rows.min() + 1 == 20 and abs(np.average(np.indices(digit.shape)[0], weights=digit) - 14) <= 1
    png, _, _, status = client.predict(str(models / "pixelcnn"), "drawing", 0, drawing, "left half", None, "auto", 1,
                                       0.0, 0, api_name="/infill_digits")
    assert np.array_equal(tiles(png, 1, page.COLUMNS + 2)[0, ..., 0], shown(digit[None])[0])
    assert "p(y | x) peaks at" in status


def test_bad_requests_give_a_message_and_the_page_keeps_working(client: Client, models: Path) -> None:
    wavenet = str(models / "wavenet")
    cases = [((wavenet, "test digit", 0, None, "painted region", None, "auto", 1, 1.0, 0), "paint"),
             ((wavenet, "drawing", 0, None, "top half", None, "auto", 1, 1.0, 0), "drawing is empty"),
             ((str(models / "audio"), "test digit", 0, None, "top half", None, "auto", 1, 1.0, 0), "not a digit model")]
    for args, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/infill_digits")
    with pytest.raises(AppError, match="choose a model"):
        client.predict(None, 3, 2, 1.0, 0, api_name="/sample_digits")
    png, _ = client.predict(wavenet, 3, 2, 1.0, 0, api_name="/sample_digits")
    assert tiles(png, 2, page.COLUMNS).shape == (2, 28, 28, 3)


def test_the_pages_events_get_the_grid_as_a_png_file_of_their_own_that_lasts_until_gradio_has_copied_it() -> None:
    grid = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    run = page.as_png_file(lambda scale, status="": (grid * scale, status))
    results = run(1, status="done")
    path, status = next(results)
    assert status == "done" and np.array_equal(np.asarray(Image.open(path)), grid)  # lossless
    assert next(run(1), None)[0] != path  # another request, another file
    with pytest.raises(StopIteration):
        next(results)
    assert not Path(path).exists()  # gone once the event has finished
