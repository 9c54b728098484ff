"""In a real browser: the digits page completes a test digit as its own class, and shows the surprise.

Debian's chromium through Playwright, as in tests/test_browser.py, against the app serving the tiny
digit models of tests/test_app_digits.py and the real MNIST test digits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pages.digits import held_out_digits
from tests.conftest import serving
from tests.test_app_digits import models  # noqa: F401  (the fixture: tiny digit models)
from tests.test_mnist import real_cache  # noqa: F401  (the fixture: real MNIST, cached once)


@pytest.fixture(scope="module")
def digits_url(models: Path, real_cache: Path) -> Iterator[str]:  # noqa: F811
    with serving(models) as url:
        yield url


def test_completing_a_test_digit_uses_its_label_and_draws_the_surprise(digits_url: str, page: Page,
                                                                      tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(digits_url + "digits")
    page.get_by_role("tab", name="Infill").click()
    index = page.get_by_label("test digit index")
    index.fill("3")
    index.press("Enter")
    page.get_by_role("button", name="Complete", exact=True).click()
    label = int(held_out_digits()[1][3])
    expect(page.get_by_text(f"Class {label}: kept 392 pixels")).to_be_visible()
    surprise = page.locator("div.block", has_text="where the model is surprised")
    expect(surprise.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot image").first).to_be_attached()
    page.screenshot(path=tmp_path / "digits_page.png", full_page=True)
    assert (tmp_path / "digits_page.png").stat().st_size > 50_000
    assert errors == []


def test_a_drawing_shows_its_canvas_draws_on_the_first_drag_and_completes(digits_url: str, page: Page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(digits_url + "digits")
    page.get_by_role("tab", name="Infill").click()
    sketchpad = page.locator("#digit-sketchpad canvas").first
    editor = page.locator("div.block", has_text="paint the region to re-draw")
    expect(page.get_by_label("test digit index")).to_be_visible()
    expect(sketchpad).to_be_hidden()  # only the canvases the chosen source and mask need
    expect(editor).to_be_hidden()

    page.get_by_label("drawing", exact=True).check()
    expect(sketchpad).to_be_visible()
    expect(page.get_by_label("test digit index")).to_be_hidden()
    box = sketchpad.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.2
    page.mouse.move(x, y)  # one drag, a vertical stroke (a 1), with no click on the brush tool first
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x, y + box["height"] * 0.6 * step / 20)
    page.mouse.up()
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Complete", exact=True).click()
    expect(page.get_by_text("kept 392 pixels")).to_be_visible()  # the drawing was not empty
    expect(page.get_by_text("overconfident on drawings unlike the training digits")).to_be_visible()

    page.get_by_label("painted region", exact=True).check()
    expect(editor).to_be_visible()
    assert errors == []
