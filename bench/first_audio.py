"""Time to first audio: `python app.py` to a served page, and the Generate click to the first streamed chunk.

    python bench/first_audio.py                      this checkout, the bundled models, 3 clicks
    python bench/first_audio.py --root ../old --clicks 0   only the start-up of another checkout (before/after)

Start-up: `python app.py --port P` is started in --root and the page is fetched until it answers;
reported in wall seconds and in the CPU seconds the process used to get there (less sensitive to a
loaded machine). First chunk: in headless chromium (the browser tests' machinery, tests/conftest.py),
the Audio page with the default model continues a 1 s tone; the time is the browser's own, from the
click to the end of the first AAC segment's download (tests/test_browser_audio_stream.py's FIRST_CHUNK).
Each click waits until the upload's request is done (a click during it waits for it). The first click
pays for loading the model and the player's HLS library; the median is over all clicks. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402
from tests.test_browser_audio_stream import CLICK_CLOCK, FIRST_CHUNK  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_app(root: Path, port: int, timeout: float = 300) -> tuple[subprocess.Popen, float, float]:
    """`python app.py --port port` in root, waited for until its page answers: (process, wall s, CPU s)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                if response.status == 200:
                    return process, time.perf_counter() - start, cpu_seconds(process.pid)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"app.py in {root} did not serve within {timeout} s")


def first_chunks(url: str, clicks: int) -> list[float]:
    """Milliseconds from the Generate click to the first streamed chunk, per click (a 1 s tone as primer)."""
    from playwright.sync_api import expect, sync_playwright

    tone = Path(tempfile.mkdtemp()) / "tone.wav"
    sf.write(tone, 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000), 8000, subtype="PCM_16")
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        for _ in range(clicks):
            page.goto(url + "audio")
            page.locator("input[type=file]").first.set_input_files(tone)
            expect(page.get_by_test_id("waveform-conditioning audio").first).to_be_visible(timeout=60_000)
            # The waveform shows before the upload's request has finished, and a click then waits for it: a
            # user clicks seconds later, so the clock starts once the upload is done.
            page.wait_for_function("() => performance.getEntriesByType('resource')"
                                   ".some(r => r.name.includes('/gradio_api/upload?'))", timeout=60_000)
            seconds = page.get_by_label("number input for seconds to generate")
            seconds.fill("0.5")
            seconds.press("Enter")
            page.evaluate(CLICK_CLOCK)
            page.get_by_role("button", name="Generate", exact=True).click()
            expect(page.get_by_text("Done in")).to_be_visible(timeout=120_000)
            page.wait_for_function("() => performance.getEntriesByType('resource')"
                                   ".some(r => r.name.includes('/stream/') && r.name.includes('.aac'))",
                                   timeout=30_000)
            times.append(round(page.evaluate(FIRST_CHUNK)))
        browser.close()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout whose app.py starts (default: this one)")
    p.add_argument("--clicks", type=int, default=3, help="Generate clicks to time (0: start-up only)")
    args = p.parse_args()
    port = free_port()
    process, wall, cpu = start_app(args.root.resolve(), port)
    try:
        clicks = first_chunks(f"http://127.0.0.1:{port}/", args.clicks) if args.clicks else []
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {"root": str(args.root), "startup_wall_s": round(wall, 2), "startup_cpu_s": round(cpu, 2),
              "first_chunk_ms": clicks, "first_chunk_median_ms": statistics.median(clicks) if clicks else None,
              "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
