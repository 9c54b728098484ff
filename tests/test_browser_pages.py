"""In a real browser: each page's examples run, and the screenshot tour (scripts/screenshots.py) visits every
page, clicks its example, finds no error and no serious accessibility violation, and draws the README's pictures.

One app (launched once for the module) serves a tiny random audio WaveNet, digit WaveNet and Fourier
WaveNet, so each page's examples run with a model in a second or two. Debian's chromium through
Playwright, as in tests/test_browser.py; axe-core 4.12 from the PyPI package axe-playwright-python
(requirements-dev.txt), which carries axe's own axe.min.js.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from playwright.sync_api import Page, expect

from core.checkpoints import save_checkpoint
from core.models.wavenet import WaveNet
from pages import PAGES
from pages.audio import EXAMPLES as AUDIO_EXAMPLES
from pages.signals import PRESETS as SIGNAL_PRESETS
from scripts import screenshots
from tests.conftest import serving, tiny_audio_config
from tests.test_digits import tiny_digit_wavenet
from tests.test_forecast import tiny_fourier_model


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("page-models")
    save_checkpoint(WaveNet(tiny_audio_config()), folder / "audio")
    save_checkpoint(tiny_digit_wavenet(4), folder / "digits")
    save_checkpoint(tiny_fourier_model(0), folder / "fourier")
    with serving(folder) as address:
        yield address


@pytest.fixture
def errors(page: Page) -> list[str]:
    """Uncaught exceptions the page throws while the test runs."""
    seen: list[str] = []
    page.on("pageerror", lambda e: seen.append(str(e)))
    return seen


def test_an_audio_example_loads_its_clip_and_continues_it_with_the_chosen_model(url: str, page: Page,
                                                                               errors: list[str]) -> None:
    page.goto(url + "audio")
    page.get_by_text(AUDIO_EXAMPLES[1][1], exact=True).click()  # the chord: 2 s at 16 kHz
    expect(page.get_by_text(re.compile(r"Done in [\d.]+ s"))).to_be_visible()
    link = page.locator("#download-1 a[href$='.wav']").first
    expect(link).to_have_attribute("href", re.compile(r"\.wav$"))
    audio, rate = sf.read(io.BytesIO(page.request.get(link.get_attribute("href")).body()), dtype="int16")
    assert rate == 8000 and len(audio) == 8000 + 16000  # the tiny model's rate: a 1 s primer of the chord, then 2 s
    assert abs(audio[:8000]).max() > 1000  # the primer is the chord, not silence
    assert errors == []


def test_a_signals_preset_forecasts_its_curve(url: str, page: Page, errors: list[str]) -> None:
    curve, observe, horizon, k, _, _ = SIGNAL_PRESETS[1]
    page.goto(url + "signals")
    page.get_by_role("tab", name="Forecast").click()
    page.get_by_text(SIGNAL_PRESETS[1][5], exact=True).click()
    expect(page.get_by_text(f"Curve {curve} (period 9.47 s): observed {observe} points")).to_be_visible()
    expect(page.get_by_text(f"{k} trajectories of {horizon} points")).to_be_visible()
    assert errors == []


def test_the_tour_runs_every_pages_example_with_no_error_nor_serious_accessibility_violation(
        url: str, browser, tmp_path: Path) -> None:
    problems = screenshots.take(browser, url, tmp_path, [stop.name for stop in screenshots.TOUR], axe=True)
    assert problems == [], "\n".join(problems)
    shots = sorted(tmp_path.glob("*.png"))
    assert sorted(s.stem for s in shots) == sorted(["home", *(p.path for p in PAGES), "sequences-dark"])
    assert all(s.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and s.stat().st_size > 20_000 for s in shots)


def test_the_tour_reports_a_page_that_shows_an_error(browser, tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    with serving(tmp_path / "none") as empty:  # no model: the audio example's Generate says so in a toast
        problems = screenshots.take(browser, empty, tmp_path / "shots", ["audio"])
    assert problems[0] == "audio: ErrorShown: an error toast appeared instead of the result"
    assert "audio: error toast: " in problems[-1] and "choose a model first" in problems[-1]
