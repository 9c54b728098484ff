"""Autoregressive Studio: the Gradio app. Builds one page per entry of pages.PAGES and serves them.

    python app.py                                  http://127.0.0.1:7860, models from checkpoints/ and runs/
    python app.py --checkpoints my_models --port 8000 --auth alice:secret
    python app.py --host 0.0.0.0 --public-demo     anyone may use it: training read-only, no downloads

Served beyond this machine (--share, or a --host that is not loopback) without a login, the app
refuses to start unless --public-demo says that is meant: see PUBLIC_HELP.

Gradio, torch and the pages are imported when the app is built, not when this module is
imported, so `python app.py --help` answers at once.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

    from core.model_store import ModelStore

DEFAULT_FOLDERS = ["checkpoints", "runs"]
# Threads that run event handlers at once. Each thread that has run torch keeps a few MiB of its own (allocator
# and kernel scratch), so Gradio's default of 40 made a busy app's memory climb until all 40 existed; a few
# more than the events that can run at once (max_concurrency per event) is enough.
WORKER_THREADS = 12
SCREENSHOTS = Path(__file__).resolve().parent / "docs" / "screenshots"  # scripts/screenshots.py draws them
# Gradio's audio player draws its times and playback rate in a fixed --neutral-400 (1.9:1 on white):
# the theme's subdued text colour instead, as everywhere else (see theme()).
# Gradio's syntax colours in gr.Code (CodeMirror), gr.JSON and code blocks in gr.Markdown (Prism) fall under
# 4.5:1 as well: the body text colour there.
CSS = ("#time, #duration, .playback { color: var(--body-text-color-subdued) !important; }\n"
       ".cm-content span, span.key, span.token { color: var(--body-text-color) !important; }")
# Two more of Gradio's own that axe-core flags, mended in the page as Gradio draws them: an empty plot, image or
# audio shows a <div aria-label="Empty value"> with no role (an aria-label needs one: "img" for that icon), and
# gr.Code's CodeMirror scroller takes tabindex -1, which keeps keyboard users from scrolling it.
HEAD = """<script>
(() => {
  let queued = false;
  const mend = () => {
    queued = false;
    document.querySelectorAll('div.empty[aria-label="Empty value"]:not([role])')
      .forEach(d => d.setAttribute("role", "img"));
    document.querySelectorAll('.cm-scroller[tabindex="-1"]').forEach(d => d.setAttribute("tabindex", "0"));
  };
  new MutationObserver(() => { if (!queued) { queued = true; requestAnimationFrame(mend); } })
    .observe(document.documentElement, {childList: true, subtree: true});
})();
</script>"""
PUBLIC_HELP = ("serve a public demo: the Train page lists and watches runs but starts, resumes, stops and deletes "
               "none, and takes no uploads (its buttons are off and its handlers refuse API calls too); data "
               "folders are only the app's own; nothing is downloaded (no MNIST fetch, Hub models only from the "
               "cache). Needed to serve the network (--share or a --host that is not loopback) without --auth")


def build_app(store: ModelStore, max_concurrency: int = 2) -> gr.Blocks:
    """The whole app: a home page listing pages and models, then one routed page per pages.PAGES entry.

    The queue runs at most `max_concurrency` calls of each event at once (generation is CPU/GPU bound).
    """
    import gradio as gr

    from pages import PAGES

    if not (isinstance(max_concurrency, int) and max_concurrency >= 1):
        raise ValueError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
    with gr.Blocks(title="Autoregressive Studio", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Autoregressive Studio\nTrain, sample from and look inside autoregressive generative models. "
                    "Every page has examples to click.")
        for row in range(0, len(PAGES), 4):
            with gr.Row(equal_height=True):
                for page in PAGES[row : row + 4]:
                    with gr.Column(min_width=200):
                        gr.Markdown(f"### [{page.title}]({page.path})\n{page.line}")
                        picture = SCREENSHOTS / f"{page.path}.png"
                        if picture.is_file():
                            gr.Image(str(picture), show_label=False, interactive=False, container=False, buttons=[],
                                     alt_text=f"the {page.title} page")
        models = gr.Markdown()
        demo.load(partial(models_markdown, store), None, models, api_visibility="private")  # fresh on every visit
    for page in PAGES:
        with demo.route(page.title, page.path):
            page.build(store)
    return demo.queue(default_concurrency_limit=max_concurrency)


def models_markdown(store: ModelStore) -> str:
    """A Markdown table of the store's models (or where to put some)."""
    models = store.list_models()
    if not models:
        folders = ", ".join(f"`{f}`" for f in store.folders)
        return f"No models found in {folders}. Train one (`python -m core.train`) or copy a checkpoint folder there."
    rows = [
        f"| {m['title']} | `{m['name']}` | {m['model_type']} | {m['config'].get('sample_rate') or '—'} "
        f"| {m['receptive_field'] or '—'} | {m['parameters']:,} |"
        for m in models
    ]
    return "\n".join(["## Models", "", "| model | name | type | sample rate | receptive field | parameters |",
                      "|---|---|---|---|---|---|", *rows])


def launch(
    demo: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    block: bool = True,
) -> str:
    """Serve `demo` with the app's upload limit and worker-thread pool; returns the local URL (at once when block
    is False)."""
    from pages.uploads import MAX_UPLOAD_BYTES

    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, auth=auth, theme=theme(), css=CSS,
                            head=HEAD, max_threads=WORKER_THREADS,
                            max_file_size=MAX_UPLOAD_BYTES, prevent_thread_lock=not block, quiet=not block)
    return url


def theme() -> gr.themes.Base:
    """Gradio's default theme with text and buttons that meet WCAG AA contrast (4.5:1) on white.

    The default's grey for secondary text (the navigation bar, control hints, slider ends: #bbbbc2,
    1.9:1) and white on its orange and red buttons (2.8:1, 3.8:1) are too faint; these are one to two
    shades darker, the buttons in the dark theme too. tests/test_browser_pages.py checks every page with
    axe-core, and the Sequences page in the dark theme.
    """
    import gradio as gr

    return gr.themes.Default().set(
        body_text_color_subdued="*neutral_600",
        button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_dark="*primary_700", button_primary_background_fill_hover_dark="*primary_800",
        button_cancel_background_fill="#b91c1c", button_cancel_background_fill_hover="#991b1b",
        button_cancel_background_fill_dark="#b91c1c", button_cancel_background_fill_hover_dark="#991b1b",
    )


def parse_auth(value: str) -> tuple[str, str]:
    """"user:password" -> (user, password); argparse.ArgumentTypeError otherwise."""
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        raise argparse.ArgumentTypeError("auth must look like user:password")
    return user, password


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="Serve the Autoregressive Studio web app.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 to serve the network, which needs "
                        "--auth or --public-demo)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    p.add_argument("--auth", type=parse_auth, default=None, metavar="USER:PASSWORD",
                   help="require this login (default: the STUDIO_AUTH environment variable, if set)")
    p.add_argument("--checkpoints", action="append", default=None, metavar="DIR",
                   help="folder of checkpoints or training runs; repeatable (default: checkpoints/ and runs/)")
    p.add_argument("--max-concurrency", type=int, default=2,
                   help="generations run at once per event; more wait in the queue (default 2)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="folder for runs started on the Train page, also served as models (default runs/)")
    p.add_argument("--max-runs", type=int, default=1, help="training runs at once from the Train page (default 1)")
    p.add_argument("--public-demo", action="store_true", help=PUBLIC_HELP)
    p.add_argument("--device", default=None,
                   help="where loaded models run: cpu, cuda, cuda:N or mps (default: CUDA if present, else "
                        "the CPU). Small models sample faster on the CPU's fused kernel than on a GPU "
                        "(README, Benchmarks), so --device cpu can pay off on a GPU machine too")
    args = p.parse_args(argv)
    if args.auth is None and os.environ.get("STUDIO_AUTH"):
        try:
            args.auth = parse_auth(os.environ["STUDIO_AUTH"])
        except argparse.ArgumentTypeError:
            p.error("STUDIO_AUTH must look like user:password")
    if is_public(args.host, args.share) and args.auth is None and not args.public_demo:
        where = "--share" if args.share else f"--host {args.host}"
        p.error(f"{where} without a login lets anyone who reaches the app start training processes of any size, "
                "fill the disk with checkpoints, stop or delete every run and upload files. Add --auth USER:PASSWORD "
                "(or set STUDIO_AUTH) to serve people you trust, or --public-demo to serve everyone a read-only "
                "demo (see --help)")
    if args.max_concurrency < 1:
        p.error(f"--max-concurrency must be >= 1, got {args.max_concurrency}")
    if args.max_runs < 1:
        p.error(f"--max-runs must be >= 1, got {args.max_runs}")
    from core.devices import pick_device
    from core.errors import ConfigError

    try:
        args.device = pick_device(args.device)
    except ConfigError as e:
        p.error(str(e))
    return args


def is_public(host: str, share: bool) -> bool:
    """Whether the app would be reachable from other machines: a gradio.live link, or a non-loopback address."""
    if share:
        return True
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may be any interface
        return True


def warm_up_in_background() -> None:
    """Build (or load from the disk cache) the C kernels (WaveNet, PixelCNN) while the app starts, so
    no user's first request pays for them; where they cannot be built the PyTorch paths serve."""
    import threading

    from core.generation import fused, pixelcnn_fused

    def build() -> None:
        fused.warm_up()
        pixelcnn_fused.warm_up()

    threading.Thread(target=build, name="kernel-warm-up", daemon=True).start()


def prepare(args: argparse.Namespace) -> ModelStore:
    """Set the app up as `args` say, before it is built: its model store, the Train page, and a public demo's limits."""
    from core.model_store import ModelStore
    from pages import train

    store = ModelStore(args.checkpoints or DEFAULT_FOLDERS, device=args.device)
    if args.runs:
        store.add_folder(args.runs)
    if args.public_demo:
        os.environ["STUDIO_NO_DOWNLOADS"] = "1"  # read by core.data.fetch and core.hub, here and in child processes
    train.configure(runs=args.runs or "runs", max_runs=args.max_runs, public_demo=args.public_demo)
    return store


def main(argv: list[str] | None = None) -> int:
    from core.native_memory import limit_malloc_arenas, start_heap_trimmer

    args = parse_args(argv)
    limit_malloc_arenas(2)  # before Gradio's worker threads exist: they share two arenas
    start_heap_trimmer()  # so a long-serving app's resident set follows what it holds (issue: load test)
    store = prepare(args)
    warm_up_in_background()
    launch(build_app(store, args.max_concurrency), host=args.host, port=args.port, share=args.share, auth=args.auth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
