"""In a real browser: the receptive-field page follows its controls.

Debian's chromium, headless, through Playwright, as in tests/test_browser.py: in CI (CI=true) a
missing browser fails this test instead of skipping it.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect


def test_changing_the_layer_count_updates_the_formula_and_the_cone(app_url: str, page: Page, tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url + "receptive-field")
    formula = page.locator("#rf-formula")
    expect(formula).to_contain_text("1·1 + 1·2 + 1·4 + 1·8 + 1 = 16")
    output_t = page.get_by_label("number input for output t")
    expect(output_t).to_have_attribute("max", "19")  # narrowed on load to R + 3

    layers = page.get_by_label("number input for layers per stack")
    layers.fill("5")
    layers.press("Enter")
    expect(formula).to_contain_text("1·1 + 1·2 + 1·4 + 1·8 + 1·16 + 1 = 32")
    expect(formula).to_contain_text("The output at t = 35")  # the slider moved to the newest output, R + 3
    expect(output_t).to_have_value("35")

    graph = page.locator("div.block", has_text="dilated causal convolution graph")
    expect(graph.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_visible()
    shot = tmp_path / "receptive_field_page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert errors == []
