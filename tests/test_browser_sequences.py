"""In a real browser: the Sequences page draws a particle filter whose lineages light on hover without a request
to the server, and plays a sampled continuation.

Debian's chromium, headless, through Playwright, as in tests/test_browser.py: in CI (CI=true) a
missing browser fails this test instead of skipping it. The app serves the tiny VRNN of
tests/test_app_sequences.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from core.model_store import ModelStore
from pages.sequences_filter import run_filter
from pages.sequences_models import held_out_rolls
from pages.sequences_music import SECONDS_PER_STEP
from pages.sequences_particles_svg import ancestry
from tests.conftest import serving
from tests.test_app_sequences import models  # noqa: F401  (the fixture: a tiny VRNN, a learned GHMM)


@pytest.fixture(scope="module")
def sequences_url(models: Path) -> Iterator[str]:  # noqa: F811
    with serving(models) as url:
        yield url


def lit(page: Page) -> set[tuple[int, int]]:
    """The (step, particle) circles lit now."""
    return {(int(t), int(n)) for t, n in page.locator("#particles-svg circle.p.lit").evaluate_all(
        "cs => cs.map(c => [c.dataset.t, c.dataset.n])")}


def hover_a_particle(page: Page, t: int) -> int:
    """Move the mouse onto the centre of a particle at step t that no other circle covers there; its index."""
    n, x, y = page.locator(f'#particles-svg circle.p[data-t="{t}"]').evaluate_all("""cs => {
      for (const c of cs) {
        const b = c.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
        if (document.elementFromPoint(x, y) === c) return [+c.dataset.n, x, y];
      }
    }""")
    page.mouse.move(x, y)
    return n


def test_the_particles_are_drawn_and_a_sample_plays(sequences_url: str, models: Path, page: Page,  # noqa: F811
                                                    tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(sequences_url + "sequences")

    page.get_by_role("tab", name="Particles").click()
    particles = page.get_by_label("number input for particles N")
    particles.fill("48")
    particles.press("Enter")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.get_by_text(re.compile(r"all 48 particles at the last step descend from"))).to_be_visible()
    cloud = page.locator("#particles-svg")
    expect(cloud.locator("circle.p")).to_have_count(48 * 25)  # the page's default 25 steps
    ess = page.locator("div.block", has_text="effective sample size")
    expect(ess.locator(".js-plotly-plot .scatterlayer .trace")).to_have_count(3)  # ESS, threshold, resampled
    run = run_filter(ModelStore([models], device="cpu"), "prior", 48, 0.5, 0, 25, 0)  # the page's other defaults
    page.wait_for_timeout(500)  # the page's own requests are done
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    n = hover_a_particle(page, 24)
    expect(cloud.locator(".pf-now")).to_contain_text(f"Particle {n} at step 24")
    assert lit(page) == {(t, int(run.lineages[t, n])) for t in range(25)}  # core's lineage of the final particle
    expect(cloud.locator("circle.p.lit")).to_have_count(25)
    m = hover_a_particle(page, 10)
    page.mouse.down()
    page.mouse.up()  # a click keeps it lit
    page.mouse.move(2, 2)
    expect(cloud.locator(".pf-now")).to_contain_text(f"Particle {m} at step 10")
    assert lit(page) == set(enumerate(ancestry(run.parents, 10, m)))
    column = cloud.locator('rect.step[data-t="3"]')
    column.hover(position={"x": column.bounding_box()["width"] / 2, "y": 2})  # its top, above the particles
    expect(cloud.locator(".pf-now")).to_contain_text(f"Step 3: ESS {run.ess[3]:.1f} of N = 48")
    expect(cloud.locator("circle.p.lit")).to_have_count(0)
    assert requests == []  # all drawn in the browser
    shot = tmp_path / "sequences_particles.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000

    page.get_by_role("tab", name="Music").click()
    # listed as "title · folder" (the title from the card, else from the family and data)
    expect(page.get_by_role("combobox", name="model")).to_have_value(re.compile(rf" · {models.name}/vrnn-tiny$"))
    page.get_by_role("button", name="Sample", exact=True).click()
    expect(page.get_by_text(re.compile(r"continued test sequence 0 of \*?jsb"))).to_be_visible()
    truth = page.locator("#truth-audio")
    expect(truth.get_by_test_id("download-link")).to_have_attribute("href", re.compile(r"/gradio_api/file=.*\.wav$"))
    player = truth.get_by_test_id(re.compile("^waveform-")).locator("audio")
    expect(player).to_have_attribute("src", re.compile(r"^blob:"))  # the player loaded the WAV
    frames = len(held_out_rolls("jsb")[0][0][:48])  # prefix 16 + 32 frames to continue, the page's defaults
    seconds = int(frames * SECONDS_PER_STEP)  # the player shows whole seconds, rounded down
    expect(truth.locator("#duration")).to_have_text(f"0:{seconds:02d}")
    rolls = page.locator("div.block", has_text="pianorolls (grey: prefix")
    expect(rolls.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot image").first).to_be_attached()
    assert errors == []
