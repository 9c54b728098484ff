"""Screenshots of every page of the app, for the README and the home page: rerun it and they never go stale.

    python scripts/screenshots.py                          serve the bundled checkpoints, write docs/screenshots/
    python scripts/screenshots.py --url http://127.0.0.1:7860/ --out /tmp/shots --pages audio digits --axe

Each page is opened at 1400 x 900 in Debian's chromium (Playwright), one of them in the dark theme too
(`sequences-dark`), and where it offers examples
the first one this tour names is clicked and its result waited for, so the picture shows the page
at work. It exits non-zero, naming the page and the message, if any page shows an error toast,
throws an uncaught exception or logs a console error, or if an awaited result never appears, and
with --axe if axe-core finds a serious or critical accessibility violation on it.
Without --url it serves `--checkpoints` itself (default: the bundled checkpoints/), with an empty
runs folder so the Train page looks the same on every machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
# Same browser and flags as tests/conftest.py: kept apart because a script does not import the tests.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 60_000  # a result that takes longer than this on a small machine counts as missing
ERROR_TOAST = "[data-testid='toast-body'].error"


@dataclass(frozen=True)
class Stop:
    name: str  # the picture's file name, without .png
    path: str  # the page's address under the app's URL ("" for the home page)
    show: Callable  # (playwright Page) -> None: what to do there before the picture; waits for its result
    theme: str = "light"  # or "dark": Gradio's dark theme (?__theme=dark) in a browser that prefers dark


class ErrorShown(Exception):
    """The page showed an error toast instead of the result awaited."""


def _result(page, locator) -> None:
    """Wait for `locator` to be visible; raise ErrorShown at once if an error toast appears first."""
    toast = page.locator(ERROR_TOAST)
    locator.or_(toast).first.wait_for()
    if toast.count():
        raise ErrorShown("an error toast appeared instead of the result")


def _plot_drawn(page, label: str) -> None:
    """Wait until the plot in the block labelled `label` has drawn a trace or a heatmap."""
    block = page.locator("div.block", has_text=label)
    block.locator(".js-plotly-plot .trace, .js-plotly-plot .heatmaplayer image").first.wait_for()


def home(page) -> None:
    page.get_by_role("heading", name="Autoregressive Studio").wait_for()
    # The load event fills the models table under a level-2 "Models" heading; the page's card for the
    # Models page is a level-3 heading of that name, there from the start.
    page.get_by_role("heading", name="Models", exact=True, level=2).wait_for()


def audio(page) -> None:
    from pages.audio import EXAMPLES

    page.get_by_text(EXAMPLES[0][1], exact=True).click()
    _result(page, page.get_by_text("Done", exact=True))
    _plot_drawn(page, "waveform (grey: primer, blue: continuation)")


def digits(page) -> None:
    from pages.digits import EXAMPLES

    page.get_by_role("tab", name="Infill").click()
    page.get_by_text(EXAMPLES[-1][2], exact=True).click()
    _result(page, page.get_by_text("kept 392 pixels", exact=False))
    _plot_drawn(page, "where the model is surprised")


def models(page) -> None:
    page.get_by_role("heading", name="Models").first.wait_for()
    page.locator("table").first.wait_for()


def train(page) -> None:
    page.get_by_role("heading", name="Train").first.wait_for()


def receptive_field(page) -> None:
    from pages.receptive_field import PRESETS

    page.get_by_text(PRESETS[3][5], exact=True).click()  # K=3, linear dilations: a cone one can follow
    _result(page, page.locator("#rf-formula").get_by_text("= 42", exact=False))
    _plot_drawn(page, "|d logits_t / d x_{t−j}| against j")


def recurrence(page) -> None:
    page.get_by_role("heading", name="Recurrence").wait_for()
    page.locator(".js-plotly-plot, canvas, svg").first.wait_for()


def signals(page) -> None:
    from pages.signals import PRESETS

    page.get_by_role("tab", name="Forecast").click()
    page.get_by_text(PRESETS[0][5], exact=True).click()
    _result(page, page.get_by_text("RMSE of the mean", exact=False))
    _plot_drawn(page, "forecast")


def sequences(page) -> None:
    """The Particles tab's filter, with the ancestry of a particle at the last step lit (in the browser)."""
    page.get_by_role("tab", name="Particles").click()
    page.get_by_role("button", name="Filter", exact=True).click()
    _result(page, page.locator("#particles-svg circle.p").first)
    page.locator("#particles-svg").scroll_into_view_if_needed()
    page.locator('#particles-svg circle.p[data-t="24"]').last.click(force=True)  # kept lit when the mouse leaves


TOUR = [Stop("home", "", home), Stop("audio", "audio", audio), Stop("digits", "digits", digits),
        Stop("models", "models", models), Stop("train", "train", train),
        Stop("receptive-field", "receptive-field", receptive_field), Stop("recurrence", "recurrence", recurrence),
        Stop("signals", "signals", signals), Stop("sequences", "sequences", sequences),
        Stop("sequences-dark", "sequences", sequences, theme="dark")]


def take(browser, url: str, out: Path, names: list[str], axe: bool = False) -> list[str]:
    """Visit the pages `names` of the app at `url` in `browser` (Playwright's), write out/<name>.png;
    returns the problems seen, with axe-core's serious and critical violations too if `axe`."""
    from playwright.sync_api import Error

    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for stop in (s for s in TOUR if s.name in names):
        context = browser.new_context(viewport=VIEWPORT, color_scheme=stop.theme)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        seen: list[str] = []
        page.on("pageerror", lambda e, seen=seen: seen.append(f"uncaught exception: {e}"))
        page.on("console", lambda m, seen=seen: seen.append(f"console error: {m.text}") if m.type == "error" else None)
        try:
            page.goto(url + stop.path + ("?__theme=dark" if stop.theme == "dark" else ""))
            stop.show(page)
            page.evaluate("window.scrollTo(0, 0)")
            page.mouse.move(0, VIEWPORT["height"] - 1)  # no hover highlight where the click was
            page.wait_for_function("() => !document.querySelector('.progress-text')")  # no event still running
            page.wait_for_timeout(300)  # let the last plot settle
            if axe:
                seen += accessibility_problems(page)
        except (Error, ErrorShown) as e:
            seen.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
        seen += [f"error toast: {t}" for t in page.locator(ERROR_TOAST).all_inner_texts()]
        page.screenshot(path=out / f"{stop.name}.png")
        _shrink(out / f"{stop.name}.png")
        problems += [f"{stop.name}: {line}" for line in seen]
        context.close()
    return problems


def _shrink(png: Path) -> None:
    """Rewrite a screenshot with a 256-colour palette: a third of the bytes, no visible change for a UI."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def accessibility_problems(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is (app.py mends those of Gradio's own
    components it found: CSS and HEAD there).

    axe-core comes from the PyPI package axe-playwright-python (requirements-dev.txt), which carries
    axe's own axe.min.js and injects it into the page.
    """
    from axe_playwright_python.sync_playwright import Axe

    found = []
    for violation in Axe().run(page).response["violations"]:
        if violation["impact"] in ("serious", "critical"):
            found += [f"axe {violation['id']} ({violation['impact']}): {node['html'][:400]}"
                      for node in violation["nodes"]]
    return found


def serve(checkpoints: list[str], runs: str) -> tuple[object, str]:
    """The app serving `checkpoints` (runs in `runs`) on a free port: (the Blocks, its URL)."""
    import socket

    from app import build_app, launch, parse_args, prepare

    args = parse_args([*(a for c in checkpoints for a in ("--checkpoints", c)), "--runs", runs, "--device", "cpu"])
    demo = build_app(prepare(args))
    for attempt in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            return demo, launch(demo, port=port, block=False)
        except OSError:  # another process took the port meanwhile
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="an app already running (default: serve --checkpoints here)")
    p.add_argument("--checkpoints", action="append", default=None, metavar="DIR",
                   help="checkpoint folder to serve without --url; repeatable (default: checkpoints/)")
    p.add_argument("--out", type=Path, default=OUT, help=f"where to write <page>.png (default {OUT.relative_to(ROOT)})")
    p.add_argument("--pages", nargs="+", choices=[s.name for s in TOUR], default=[s.name for s in TOUR])
    p.add_argument("--axe", action="store_true",
                   help="also check each page with axe-core: a serious or critical violation is a problem")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        p.error(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="screenshots-runs-") as runs:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        demo, url = (None, args.url.rstrip("/") + "/") if args.url else \
            serve(args.checkpoints or [str(ROOT / "checkpoints")], runs)
        try:
            problems = take(browser, url, args.out, args.pages, axe=args.axe)
        finally:
            browser.close()
            if demo is not None:
                demo.close()
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(args.pages)} page(s) to {args.out}, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
