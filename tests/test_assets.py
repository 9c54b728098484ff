"""The example files the pages offer (assets/, made by scripts/make_assets.py) are small, end in sound and
are what assets/SOURCE.md says; the synthetic ones are made again byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pages import audio, digits
from pages.examples import ASSETS, asset
from scripts import make_assets
from tests.test_mnist import real_cache  # noqa: F401  (the fixture: real MNIST, cached once)

CLIPS = [path for path, _, _ in audio.EXAMPLES]


@pytest.mark.parametrize("clip", CLIPS)
def test_an_audio_example_is_short_small_and_ends_in_sound(clip: str) -> None:
    samples, rate = sf.read(asset(clip), dtype="float32")
    assert samples.ndim == 1 and 1.5 <= len(samples) / rate <= 5
    assert Path(asset(clip)).stat().st_size < 300_000
    assert make_assets.end_level_dbfs(samples, rate) > make_assets.END_DBFS


def test_all_examples_together_stay_under_a_megabyte_and_a_half_and_are_described() -> None:
    files = [p for p in ASSETS.glob("audio/*") if p.is_file()] + [p for p in ASSETS.glob("digits/*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 1_500_000
    source = (ASSETS / "SOURCE.md").read_text()
    assert all(f"`{p.parent.name}/{p.name}`" in source or p.name.startswith("test_") for p in files)


def test_the_chord_and_the_drawing_are_made_again_byte_for_byte(tmp_path: Path) -> None:
    make_assets.chord(tmp_path / "chord.wav")
    make_assets.drawing(tmp_path)
    assert (tmp_path / "chord.wav").read_bytes() == Path(asset("audio/chord.wav")).read_bytes()
    assert (tmp_path / "drawn_4.png").read_bytes() == Path(asset("digits/drawn_4.png")).read_bytes()


@pytest.mark.parametrize("name", [name for name, _, _ in digits.EXAMPLES])
def test_a_digit_example_reads_as_a_framed_digit_from_the_canvas(name: str) -> None:
    """As the canvas sends an example: the picture as the composite, an empty (transparent) layer on it."""
    picture = np.asarray(Image.open(asset(f"digits/{name}")).convert("RGBA"))
    value = {"background": picture, "layers": [np.zeros_like(picture)], "composite": picture}
    digit = digits.drawing_to_digit(value)
    assert digit.shape == (28, 28) and digit.max() > 200
    rows, cols = np.nonzero(digit)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)  # framed as MNIST's are


def test_the_test_digit_pictures_are_mnists_test_digits(real_cache: Path) -> None:  # noqa: F811
    from core.data.mnist_sources import load_mnist

    splits = load_mnist()
    for name, _, _ in digits.EXAMPLES[:-1]:
        _, index, label = Path(name).stem.split("_")
        picture = np.asarray(Image.open(asset(f"digits/{name}")))[::10, ::10]
        assert int(splits["y_test"][int(index)]) == int(label)
        assert (255 - picture == splits["x_test"][int(index)].reshape(28, 28)).all()

