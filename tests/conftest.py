"""Fixtures shared by test modules: a tiny random audio WaveNet checkpoint, the app serving it, and the
speech corpus's test split."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from app import build_app, launch
from core.checkpoints import save_checkpoint
from core.model_store import ModelStore
from core.models.wavenet import WaveNet, WaveNetConfig

TINY_SAMPLE_RATE = 8000
ROOT = Path(__file__).resolve().parents[1]
SPEECH_CORPUS = "data/speech16k"  # where scripts/render_speech.py writes the corpus by default


def tiny_audio_config(**kwargs) -> WaveNetConfig:
    """An 8 kHz, 256-level audio WaveNet with receptive field 16: random weights generate in well under a second."""
    return WaveNetConfig(quantization_levels=256, dilations=[1, 2, 4, 8], residual_channels=8, dilation_channels=8,
                         skip_channels=8, head_channels=8, sample_rate=TINY_SAMPLE_RATE, **kwargs)


@pytest.fixture(scope="session")
def tiny_audio_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding one checkpoint, `tiny`: a random (seed 0) `tiny_audio_config()` WaveNet."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    save_checkpoint(WaveNet(tiny_audio_config()), folder / "tiny")
    return folder


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the speech corpus's test split (unseen voices): SPEECH_CORPUS where this machine rendered
    it, else that split rendered now by scripts/render_speech.py (about a minute; eSpeak NG speaks all its voices,
    and the renderer's output is the same file for file). Skips without espeak-ng, fails in CI, which installs it."""
    if (ROOT / SPEECH_CORPUS / "test").is_dir():
        return ROOT / SPEECH_CORPUS
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs espeak-ng, but the speech test split needs it", pytrace=False)
        pytest.skip(f"needs {SPEECH_CORPUS}/test or `apt-get install espeak-ng` to render it")
    out = tmp_path_factory.mktemp("speech16k")
    subprocess.run([sys.executable, str(ROOT / "scripts/render_speech.py"), "--out", str(out), "--splits", "test"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def app_url(tiny_audio_models: Path) -> Iterator[str]:
    """The whole app serving `tiny_audio_models` on a free local port; yields its base URL (ending in '/')."""
    with serving(tiny_audio_models) as url:
        yield url


@contextmanager
def serving(models: Path) -> Iterator[str]:
    """The whole app serving the checkpoints in `models` on a free local port, for the `with` block: its URL."""
    demo = build_app(ModelStore([models], device="cpu"))
    url = launch(demo, port=free_port(), block=False)
    try:
        yield url
    finally:
        demo.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
BROWSER_TIMEOUT_MS = 30_000  # generous: CI machines are small and shared


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless, through Playwright (its own browser download does not work here).

    In CI (CI=true) a missing chromium fails the test instead of skipping it: `.ci/run` installs it.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        reason = f"no chromium at {CHROMIUM}: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI, but there is {reason}", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """A fresh 1280x900 page in its own browser context; actions and expect() wait up to BROWSER_TIMEOUT_MS."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
