"""In a real browser: the Models table shows every column, headers wrapped between words only, in a 1400 px
window, and scrolls sideways to its last column in a 420 px one. The app serves tiny WaveNets carrying the
titles, folder names and metrics of the bundled checkpoints with the longest cells (building the real ones to
list them would take a minute).

Debian's chromium, headless, through Playwright, as in tests/test_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Browser, expect

from core.checkpoints import card_title, model_card, read_metrics, save_checkpoint
from core.models.wavenet import WaveNet
from pages.models import HEADERS
from tests.conftest import BROWSER_TIMEOUT_MS, serving, tiny_audio_config

ROOT = Path(__file__).resolve().parents[1]

# Per header: its box and the table viewport's (px, in the window), and whether each of its words lies on one line.
HEADER_GEOMETRY = """(table) => {
  const view = table.closest('.virtual-table-viewport').getBoundingClientRect();
  return [...table.querySelectorAll('thead th')].map((th) => {
    const r = th.getBoundingClientRect(), span = th.querySelector('.header');
    const text = span.firstChild, words = [];
    for (const m of text.textContent.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(text, m.index);
      range.setEnd(text, m.index + m[0].length);
      words.push(range.getClientRects().length === 1);
    }
    return {text: text.textContent, left: r.left, right: r.right, viewLeft: view.left, viewRight: view.right,
            whole: words.every(Boolean), fits: span.scrollWidth <= span.clientWidth + 1};
  });
}"""


LONGEST = ("srnn-jsb-fivo", "fourier-wavenet-unrolled", "melodies-wavenet")  # of checkpoints/: metrics, titles


@pytest.fixture(scope="module")
def bundled_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    for name in LONGEST:
        model, metrics = WaveNet(tiny_audio_config()), read_metrics(ROOT / "checkpoints" / name)
        save_checkpoint(model, folder / name, metrics=metrics,
                        card=model_card(model, metrics, title=card_title(ROOT / "checkpoints" / name)))
    with serving(folder) as url:
        yield url


def headers(browser: Browser, url: str, width: int) -> tuple[list[dict], object]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    page.goto(url + "models")
    table = page.locator("#models-table table").first
    for name in LONGEST:
        expect(page.locator("#models-table")).to_contain_text(card_title(ROOT / "checkpoints" / name))
    return table.evaluate(HEADER_GEOMETRY), page


def test_at_1400_px_every_header_is_in_view_and_breaks_only_between_words(bundled_url: str, browser: Browser) -> None:
    shown, page = headers(browser, bundled_url, 1400)
    assert [h["text"] for h in shown] == HEADERS
    for h in shown:
        assert h["viewLeft"] <= h["left"] and h["right"] <= h["viewRight"] + 1, f"{h['text']} is cut off"
        assert h["whole"] and h["fits"], f"the header {h['text']!r} breaks inside a word"
    page.context.close()


def test_at_420_px_the_table_scrolls_to_its_last_column(bundled_url: str, browser: Browser) -> None:
    shown, page = headers(browser, bundled_url, 420)
    assert shown[-1]["right"] > shown[-1]["viewRight"]  # too wide for the window: not squeezed
    assert all(h["whole"] and h["fits"] for h in shown)
    last = page.locator("#models-table thead th").last
    last.scroll_into_view_if_needed()
    box, view = last.bounding_box(), page.locator("#models-table .virtual-table-viewport").first.bounding_box()
    assert view["x"] <= box["x"] and box["x"] + box["width"] <= view["x"] + view["width"] + 1
    expect(last).to_contain_text("path")
    page.context.close()
