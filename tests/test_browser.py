"""In a real browser: the audio page driven the way a person uses it.

Debian's chromium, headless, through Playwright (Playwright's own browser download does not work
on these machines). Install it with `apt-get install chromium`; `.ci/run` does so in CI, where a
missing browser fails this test instead of skipping it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import Page, expect

import pages.audio as audio_page


def test_upload_move_temperature_generate_and_listen(app_url: str, page: Page, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    wav = tmp_path / "tone.wav"
    sf.write(wav, 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000), 16000, subtype="PCM_16")  # 0.5 s
    requests = []  # what the server was asked for: the Settings the handler validated
    original = audio_page.check_settings

    def recording(*args):
        requests.append(original(*args))
        return requests[-1]

    monkeypatch.setattr(audio_page, "check_settings", recording)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(app_url + "audio")
    page.locator("input[type=file]").first.set_input_files(wav)
    expect(page.get_by_test_id("waveform-conditioning audio").first).to_be_visible()  # the upload reached the server

    slider = page.get_by_label("range slider for temperature")
    temperature = page.get_by_label("number input for temperature")
    expect(temperature).to_have_value("0.85")
    slider.scroll_into_view_if_needed()  # below the primer options: the mouse drags only what is on screen
    box = slider.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.85 / 2, y)  # the thumb, at 0.85 of [0, 2]
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 4, y, steps=5)
    page.mouse.up()
    expect(temperature).not_to_have_value("0.85")
    chosen = float(temperature.input_value())
    assert 0 < chosen < 0.85 and float(slider.input_value()) == chosen

    seconds = page.get_by_label("number input for seconds to generate")
    seconds.fill("0.2")
    seconds.press("Enter")
    expect(page.get_by_label("range slider for seconds to generate")).to_have_value("0.2")

    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.get_by_text(re.compile(r"Done in [\d.]+ s"))).to_be_visible()
    assert [(r.temperature, r.seconds) for r in requests] == [(chosen, 0.2)]

    source = page.locator("#download-1 a[href$='.wav']").first
    expect(source).to_have_attribute("href", re.compile(r"/gradio_api/file=.*\.wav$"))
    response = page.request.get(source.get_attribute("href"))
    assert response.ok
    audio, rate = sf.read(io.BytesIO(response.body()), dtype="int16")
    assert rate == 8000 and len(audio) == 4000 + 1600  # the tiny model's rate: all the upload as primer, then 0.2 s

    figure = page.locator("#figure-1")
    expect(figure.locator(".scatterlayer .trace")).to_have_count(2)  # primer and continuation, drawn before the shot
    expect(figure.locator(".heatmaplayer image")).to_have_count(1)  # the spectrogram below them
    shot = tmp_path / "audio_page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert errors == []


def test_a_model_named_in_the_address_is_chosen_even_one_saved_after_the_app_started(
        page: Page, tmp_path: Path) -> None:
    """The Train page links a finished run as `audio?model=PATH`: the visit re-scans and selects it."""
    from urllib.parse import quote

    from core.checkpoints import save_checkpoint
    from core.models.wavenet import WaveNet
    from tests.conftest import serving, tiny_audio_config

    models = tmp_path / "models"
    for name in ("alpha", "beta"):
        save_checkpoint(WaveNet(tiny_audio_config()), models / name)
    with serving(models) as url:
        chooser = page.get_by_role("combobox", name="model")
        page.goto(url + "audio")
        expect(chooser).to_have_value("WaveNet on audio, 8 kHz · models/alpha")
        page.goto(url + "audio?model=" + quote(str(models / "beta"), safe=""))
        expect(chooser).to_have_value("WaveNet on audio, 8 kHz · models/beta")
        save_checkpoint(WaveNet(tiny_audio_config()), models / "gamma")  # trained while the app runs
        page.goto(url + "audio?model=" + quote(str(models / "gamma"), safe=""))
        expect(chooser).to_have_value("WaveNet on audio, 8 kHz · models/gamma")
        page.goto(url + "audio?model=" + quote(str(tmp_path / "elsewhere"), safe=""))
        expect(chooser).to_have_value("WaveNet on audio, 8 kHz · models/alpha")  # not one of the app's: the first
