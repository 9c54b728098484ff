"""In a real browser: the Audio page's players stream while the model generates, and a run can be cancelled.

One app serves the module (conftest's app_url, the tiny random WaveNet at 8 kHz). Generation is paced
(a sleep per chunk) so that a run lasts long enough to watch it stream, double-click and cancel.
Streaming needs ffmpeg (Gradio encodes the chunks to AAC for an HLS stream): `.ci/run` installs it.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import Page, expect

import pages.audio as audio_page
from core.audio import to_int16

SR = 8000
CHUNK_PAUSE = 0.1  # seconds of sleep per 800-sample chunk: 2 s of audio take about 2 s

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="streaming audio needs ffmpeg")

CLICK_CLOCK = """() => document.addEventListener('click', e => {
    if (e.target.closest('button')?.textContent.trim() === 'Generate') window.clickedAt ??= performance.now();
}, true)"""
FIRST_CHUNK = """() => Math.min(...performance.getEntriesByType('resource')
    .filter(r => r.name.includes('/stream/') && r.name.includes('.aac')).map(r => r.responseEnd)) - window.clickedAt"""


@pytest.fixture
def paced(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Every chunk (B, n) the model makes, in order; each takes CHUNK_PAUSE longer."""
    chunks, original = [], audio_page.continue_audio

    def pacing(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            time.sleep(CHUNK_PAUSE)
            chunks.append(chunk)
            yield chunk

    monkeypatch.setattr(audio_page, "continue_audio", pacing)
    return chunks


def set_seconds(page: Page, seconds: float) -> None:
    box = page.get_by_label("number input for seconds to generate")
    box.fill(f"{seconds:g}")
    box.press("Enter")
    expect(page.get_by_label("range slider for seconds to generate")).to_have_value(f"{seconds:g}")


def decode_aac(segments: list[bytes]) -> np.ndarray:
    """ADTS AAC frames -> float samples at SR (ffmpeg)."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-f", "aac", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
                          "-ar", str(SR), "pipe:1"], input=b"".join(segments), capture_output=True, check=True).stdout
    return np.frombuffer(pcm, np.int16) / 32768


def test_player_streams_the_chunks_in_order_while_generating_and_the_download_is_the_generated_audio(
        app_url: str, page: Page, paced: list[np.ndarray]) -> None:
    segments: list[tuple[float, str, bytes]] = []  # (arrival, url, body) of each streamed AAC segment
    page.on("response", lambda r: segments.append((time.monotonic(), r.url, r.body()))
            if "/stream/" in r.url and ".aac" in r.url else None)
    page.goto(app_url + "audio")
    expect(page.locator("#audio-status")).to_be_hidden()  # nothing empty before there is content
    expect(page.get_by_text("Variation 1")).to_be_hidden()
    set_seconds(page, 2.0)
    page.evaluate(CLICK_CLOCK)
    page.get_by_role("button", name="Generate", exact=True).click()

    player = page.locator("#player-1 audio")
    expect(player).to_have_js_property("paused", False)  # variation 1 plays as it comes (autoplay)
    page.mouse.wheel(0, 5000)
    expect(page.locator("#audio-status")).to_be_in_viewport()  # the status line stays in view
    positions = []
    while not page.get_by_text(re.compile(r"Done in [\d.]+ s")).is_visible():
        positions.append(player.evaluate("a => a.currentTime"))
        page.wait_for_timeout(200)
    done_at = time.monotonic()
    assert len(positions) >= 5, "the run was over before it could be watched"
    assert positions[-1] > 0.5, "nothing played during generation"
    assert positions == sorted(positions), f"playback went back (a restart): {positions}"
    first_chunk_ms = page.evaluate(FIRST_CHUNK)
    print(f"click to first streamed chunk: {first_chunk_ms:.0f} ms")

    link = page.locator("#download-1 a[href$='.wav']").first  # the final file equals the generated samples
    expect(link).to_be_visible()
    wav, rate = sf.read(io.BytesIO(page.request.get(link.get_attribute("href")).body()), dtype="int16")
    generated = np.concatenate(paced, axis=1)[0]
    assert rate == SR and len(generated) == 2 * SR
    np.testing.assert_array_equal(wav, to_int16(generated))

    assert segments[0][0] < done_at - 1.0, "the first chunk reached the browser only at the end"
    deadline = time.monotonic() + 10  # the player fetches the last segments as it plays up to them: after Done
    while True:
        streamed = decode_aac([body for _, _, body in segments])
        lag = int(np.argmax(np.correlate(streamed[:4000], wav[:2000] / 32768, "valid")))  # the encoder's delay
        heard = streamed[lag:lag + len(wav)]
        if len(heard) >= len(wav) - 1024 or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    assert len(heard) >= len(wav) - 1024, "the stream did not carry the whole generated audio"
    for start in range(0, len(heard) - 800, 800):  # every 0.1 s in its place: the chunks came in order
        part = slice(start, start + 800)
        assert np.corrcoef(heard[part], wav[part] / 32768)[0, 1] > 0.8, f"samples {start}… are not where they belong"


def test_generate_is_off_while_running_and_cancel_keeps_the_partial_audio(
        app_url: str, page: Page, paced: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    runs, original = [], audio_page.check_settings
    monkeypatch.setattr(audio_page, "check_settings", lambda *args: runs.append(args) or original(*args))
    page.goto(app_url + "audio")
    set_seconds(page, 10.0)
    generate, cancel = page.get_by_role("button", name="Generate", exact=True), page.get_by_role("button",
                                                                                               name="Cancel")
    expect(cancel).to_be_disabled()
    generate.dblclick()
    expect(generate).to_be_disabled()
    expect(page.get_by_text(re.compile(r"samples/s · about"))).to_be_visible()  # generating
    generate.click(force=True)  # a click on the disabled button does nothing either
    cancel.click()
    status = page.locator("#audio-status")
    expect(status).to_contain_text(re.compile(r"Cancelled at \d+ %"))
    expect(generate).to_be_enabled()
    expect(cancel).to_be_disabled()
    assert len(runs) == 1, f"{len(runs)} runs for a double click and a click while running"

    percent = int(re.search(r"Cancelled at (\d+) %", status.inner_text()).group(1))
    made = np.concatenate(paced, axis=1)[0]
    assert 0 < len(made) < 10 * SR and percent == round(100 * len(made) / (10 * SR))
    link = page.locator("#download-1 a[href$='.wav']").first
    expect(link).to_be_visible()
    wav, _ = sf.read(io.BytesIO(page.request.get(link.get_attribute("href")).body()), dtype="int16")
    np.testing.assert_array_equal(wav, to_int16(made))  # the partial audio, all of it
    expect(page.locator("#figure-1 .js-plotly-plot")).to_be_visible()  # and its plots
