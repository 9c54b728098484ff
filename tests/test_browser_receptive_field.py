"""In a real browser: the receptive-field page follows its controls, lights the cone of the hovered or clicked
output in the browser itself (no request to the server), and its story's steps set the controls.

Debian's chromium, headless, through Playwright, as in tests/test_browser.py: in CI (CI=true) a
missing browser fails this test instead of skipping it.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from core import cone
from pages.receptive_field_controls import config_from_controls


def lit_nodes(page: Page) -> set[tuple[int, int]]:
    """The (shown level, column) nodes the graph shows lit now."""
    nodes = page.locator("#rf-graph rect.node.lit")
    return {(int(level), int(col)) for level, col in nodes.evaluate_all(
        "ns => ns.map(n => [n.dataset.level, n.dataset.col])")}


def expected(t: int, layers: int = 4) -> set[tuple[int, int]]:
    """core.cone's cone of the output at t as (level, column): column 2 + position, 0 for the padding."""
    full = cone.cone(config_from_controls(2, 1, layers, "exponential", "", 1), t, padding=True)
    return {(level, p + 2 if p >= cone.first_real(level) else 0) for level, nodes in enumerate(full) for p in nodes}


def test_hovering_an_output_lights_its_cone_without_a_request(app_url: str, page: Page, tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url + "receptive-field")
    formula = page.locator("#rf-formula")
    expect(formula).to_contain_text("1·1 + 1·2 + 1·4 + 1·8 + 1 = 16")
    output_t = page.get_by_label("number input for output t")
    expect(output_t).to_have_attribute("max", "19")  # narrowed on load to R + 3
    now = page.locator("#rf-graph .rf-now")
    expect(now).to_contain_text("The output at t = 19")
    assert lit_nodes(page) == expected(19)
    page.wait_for_timeout(1000)  # the page's own start-up requests are done

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.locator('#rf-graph rect.out[data-col="9"]').hover()  # the output at t = 7
    expect(now).to_contain_text("The output at t = 7")
    assert lit_nodes(page) == expected(7)
    assert page.locator("#rf-graph line.edge.lit").count() > 0
    page.locator('#rf-graph rect.out[data-col="14"]').click()  # t = 12, kept after the mouse leaves
    expect(now).to_contain_text("The output at t = 12")
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    expect(now).to_contain_text("The output at t = 12")
    assert lit_nodes(page) == expected(12)
    assert requests == []  # hover, click and leave were all drawn in the browser

    layers = page.get_by_label("number input for layers per stack")
    layers.fill("5")
    layers.press("Enter")
    expect(formula).to_contain_text("1·1 + 1·2 + 1·4 + 1·8 + 1·16 + 1 = 32")
    expect(formula).to_contain_text("The output at t = 35")  # the slider moved to the newest output, R + 3
    expect(output_t).to_have_value("35")
    expect(now).to_contain_text("The output at t = 35")
    assert lit_nodes(page) == expected(35, layers=5)

    page.get_by_label("4. what the model really uses").check()  # the story's last step: three stacks of 1 … 512
    expect(formula).to_contain_text("= 3,070")
    expect(page.locator("#rf-graph")).to_contain_text("stacks 1–2 (×2, d = 1 … 512)")
    expect(page.locator("#rf-story")).to_contain_text("Measured receptive field")
    page.get_by_label("number input for stacks").fill("2")
    page.get_by_label("number input for stacks").press("Enter")
    expect(formula).to_contain_text("= 2,047")
    expect(page.locator("#rf-story")).not_to_contain_text("Measured receptive field")  # off the story now
    shot = tmp_path / "receptive_field_page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert errors == []
