"""In a real browser: the recurrence page's grid lights the gradient's reach of the hovered loss and of the chosen
step in the browser itself, without a request to the server, and redraws from the server when a preset or a
control changes.

Debian's chromium, headless, through Playwright, as in tests/test_browser.py: skipped when it is missing
(in CI, CI=true, a missing browser fails instead).
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from core.models.wayback_schedule import seed_animations


def lit_cells(page: Page) -> set[tuple[int, int]]:
    """The (layer, step) cells the grid shows lit now."""
    cells = page.locator("#recurrence-grid rect.cell.lit")
    return {(int(layer), int(step)) for layer, step in cells.evaluate_all(
        "cs => cs.map(c => [c.dataset.layer, c.dataset.step])")}


def expected(name: str, t: int) -> set[tuple[int, int]]:
    schedule, steps = seed_animations()[name]
    return {(i, s) for i, row in enumerate(schedule.grid(steps, t)["gradient"]) for s, on in enumerate(row) if on}


def test_hovering_a_loss_cell_and_stepping_light_its_reach_without_a_request(app_url: str, page: Page,
                                                                            tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url + "recurrence")
    now = page.locator("#recurrence-grid .rec-now")
    expect(now).to_contain_text("Loss at step 26")
    assert lit_cells(page) == expected("multi-scale truncated", 26)
    page.wait_for_timeout(1000)  # the page's own start-up requests are done

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.locator('#recurrence-grid rect.loss[data-loss="10"]').hover()
    expect(now).to_contain_text("Loss at step 10")
    assert lit_cells(page) == expected("multi-scale truncated", 10)
    page.locator('#recurrence-grid rect.loss[data-loss="4"]').hover()
    expect(now).to_contain_text("Loss at step 4")
    assert lit_cells(page) == expected("multi-scale truncated", 4)
    page.mouse.move(5, 5)  # leaving the grid shows the slider's step again
    expect(now).to_contain_text("Loss at step 26")

    page.get_by_role("button", name="◀ step").click()
    expect(now).to_contain_text("Loss at step 25")
    expect(page.get_by_label("number input for step t (its loss is backpropagated)")).to_have_value("25")
    assert lit_cells(page) == expected("multi-scale truncated", 25)
    page.wait_for_timeout(300)
    assert requests == []  # hover, leave and step were all drawn in the browser

    page.get_by_label("truncated: the same stack cut every 9 steps", exact=False).check()
    expect(page.locator("#recurrence-numbers")).to_contain_text("18 states held for backprop")
    expect(now).to_contain_text("Loss at step 26")
    assert lit_cells(page) == expected("truncated", 26)
    expect(page.locator("#recurrence-grid rect.cell.held")).to_have_count(18)  # the last 9 steps of both layers
    assert requests  # the new schedule came from the server

    boundaries = page.get_by_label("boundaries")
    boundaries.fill("3, 3")  # a boundary edit redraws once Enter is pressed
    boundaries.press("Enter")
    expect(page.locator("#recurrence-numbers")).to_contain_text("6 states held for backprop")
    expect(page.locator("#recurrence-grid rect.cell.lit")).to_have_count(6)

    shot = tmp_path / "recurrence_page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert errors == []
