"""The audio page: upload a clip, let an audio WaveNet continue it, listen while it is generated.

The flow is a chain of plain functions, each testable without a browser:

    load_primer(upload, rate, prime_seconds)   the last N seconds of the upload at the model's rate, before its
                                               trailing silence, level matched on request (core.primer)
    check_settings(model, ...)                 the user's choices, validated -> Settings
    run_continuation(model, primer, heard, s)  yields a growing Take per chunk (core.continuation)
    generate_audio(store, ...)                 the event handler: streams each chunk to the players, then
                                               gives each variation's WAV and figure (pages.audio_plots)

The output area and a run's Cancel are in pages.audio_output.

Each variation's audio is the primer *as the model heard it* (resampled, quantised, decoded)
followed by the continuation, so what you hear is exactly the sequence the model saw and made
(with level matching, both are scaled back by the gain the primer was raised by).
Audio goes to the players as 16-bit WAV bytes: Gradio would peak-normalise float audio (changing the
loudness from chunk to chunk) and write an array to a cache file named by its content, which two runs
making the same audio would write at once. Which models are listed, and how, is pages.audio_models.
"""

from __future__ import annotations

import html
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from core.audio import read_audio, wav_bytes, write_wav
from core.continuation import check_audio_model, continue_audio, heard
from core.errors import ConfigError, StudioError
from core.generation import default_method
from core.model_store import ModelStore
from core.models.wavenet import WaveNet
from core.primer import SILENCE_DBFS, Loudness, Primer, loudness_of, prepare_primer, read_seconds
from pages.audio_models import audio_models, class_props, example_model, model_summary, temperature_of
from pages.audio_output import (
    MAX_VARIATIONS,
    Runs,
    build_output_area,
    build_status,
    finished,
    on_page,
    visible_tabs,
)
from pages.audio_plots import variation_figure
from pages.checks import is_whole, require
from pages.examples import asset, run_after_example
from pages.model_picker import model_picker
from pages.uploads import MAX_UPLOAD_BYTES

# (file in assets/, what it is, the bundled model made for such sound): clips that end in sound, so the model
# has something to continue. Clicking one chooses that model when the app has it (else the model stays).
EXAMPLES = [
    ("audio/chorale_melody.wav", "a Bach melody the melody model never heard (8 kHz)", "melodies-wavenet"),
    ("audio/chord.wav", "a C major chord (16 kHz), continued by the tones model", "tones-wavenet"),
    ("audio/spoken.wav", "a spoken sentence (espeak-ng, 16 kHz)", "speech-wavenet"),
]
MAX_SECONDS = 20.0  # longest continuation a request may ask for
MAX_PRIME_SECONDS = 10.0
UPDATE_EVERY = 0.5  # seconds between UI updates while generating


@dataclass(frozen=True)
class Settings:
    """A validated generation request (what the sliders and boxes said)."""

    seconds: float
    temperature: float
    top_k: int | None  # None = no top-k filter
    variations: int
    seed: int | None  # None = a fresh random seed
    class_id: int | None  # None for a model without classes


@dataclass(frozen=True)
class Take:
    """Where a generation stands after a chunk: all variations so far, and how fast they came."""

    sample_rate: int
    primer: np.ndarray  # (P,) float32, the primer as the model heard it
    continuation: np.ndarray  # (B, n) float32, generated so far
    total: int  # samples to generate per variation
    elapsed: float  # seconds of generation so far
    method: str  # the generation path that ran: "fused" or "fused-bf16" (compiled CPU kernel) or "cached"
    fresh: int  # samples per variation that this take added (the last ones of continuation)

    @property
    def done(self) -> int:
        return self.continuation.shape[1]

    def audio(self, i: int) -> np.ndarray:
        """Variation i: primer + continuation so far, float32 (P + n,)."""
        return np.concatenate([self.primer, self.continuation[i]])


def load_primer(
    upload: str | None, sample_rate: int, prime_seconds: float, *, trim: bool = True, match_level: bool = False,
    target: Loudness = Loudness(),
) -> Primer | None:
    """The primer from the uploaded file at `sample_rate` (core.primer.prepare_primer); None without an upload.

    Its last `prime_seconds` before its trailing silence (with `trim`), level matched to `target` (the model's
    training loudness, core.primer.loudness_of) on request. Only
    the end of the file is decoded (core.audio.read_audio's last_seconds). Raises AudioError for an
    upload that is not usable audio (not audio, empty, NaN, over 20 MiB).
    """
    if not upload:
        return None
    if not (isinstance(prime_seconds, (int, float)) and 0 < prime_seconds <= MAX_PRIME_SECONDS):
        raise ConfigError(f"prime seconds must be in (0, {MAX_PRIME_SECONDS:g}], got {prime_seconds!r}")
    end = read_audio(upload, sample_rate, max_bytes=MAX_UPLOAD_BYTES, last_seconds=read_seconds(prime_seconds, trim))
    return prepare_primer(end, sample_rate, prime_seconds, trim=trim, match_level=match_level, target=target)


def check_settings(
    model: WaveNet,
    seconds: float,
    temperature: float,
    top_k: float | None,
    variations: float,
    seed: float | None,
    class_id: float | None,
) -> Settings:
    """Validate the page's inputs for `model` (ConfigError naming the input); 0 top-k means off."""
    check_audio_model(model)
    need = require
    sr = model.config.sample_rate
    need(isinstance(seconds, (int, float)) and 1 / sr <= seconds <= MAX_SECONDS,
         f"seconds to generate must be in [1/{sr}, {MAX_SECONDS:g}], got {seconds!r}")
    need(isinstance(temperature, (int, float)) and 0 <= temperature <= 2,
         f"temperature must be in [0, 2] (0 = greedy), got {temperature!r}")
    need(top_k is None or (is_whole(top_k) and top_k >= 0), f"top-k must be a whole number >= 0, got {top_k!r}")
    need(is_whole(variations) and 1 <= variations <= MAX_VARIATIONS,
         f"variations must be a whole number in [1, {MAX_VARIATIONS}], got {variations!r}")
    need(seed is None or (is_whole(seed) and 0 <= seed < 2**63), f"seed must be a whole number >= 0, got {seed!r}")
    # Families without class conditioning have none; a pitch-conditioned model takes its class from the primer.
    n_classes = 0 if getattr(model.config, "classes_from", "") else getattr(model.config, "n_classes", 0)
    if n_classes:
        need(class_id is not None and is_whole(class_id) and 0 <= class_id < n_classes,
             f"this model is class-conditional: class id must be in [0, {n_classes - 1}], got {class_id!r}")
    return Settings(
        seconds=float(seconds),
        temperature=float(temperature),
        top_k=int(top_k) if top_k else None,
        variations=int(variations),
        seed=int(seed) if seed is not None else None,
        class_id=int(class_id) if n_classes else None,
    )


def run_continuation(model: WaveNet, primer: Primer | None, primer_heard: np.ndarray,
                     settings: Settings) -> Iterator[Take]:
    """Generate all variations in one batch; yield the growing Take after every chunk. primer_heard (P,):
    `primer` as the model hears it (core.continuation.heard), which every Take carries."""
    sr = model.config.sample_rate
    audio, gain = (primer.audio, primer.gain) if primer is not None else (None, 1.0)
    total = int(round(settings.seconds * sr))
    chunks: list[np.ndarray] = []
    method = default_method(model)
    start = time.perf_counter()
    for chunk in continue_audio(
        model, audio, settings.seconds, temperature=settings.temperature, top_k=settings.top_k,
        batch=settings.variations, seed=settings.seed, classes=settings.class_id, method=method,
        chunk_size=max(100, sr // 10), gain=gain,
    ):
        chunks.append(chunk)
        yield Take(sr, primer_heard, np.concatenate(chunks, axis=1), total, time.perf_counter() - start, method,
                   chunk.shape[1])


def status_html(take: Take, finished: bool, cancelled: bool = False) -> str:
    """Progress while generating; achieved speed and real-time factor when finished; where a Cancel stopped it."""
    rate = take.done / take.elapsed if take.elapsed > 0 else 0.0
    batch = take.continuation.shape[0]
    frac = take.done / take.total if take.total else 1.0
    if cancelled:
        return (
            f"<b>Cancelled at {100 * frac:.0f} %</b>: {take.done:,} of {take.total:,} samples × {batch} "
            f"variation(s) in {take.elapsed:.1f} s with the <i>{take.method}</i> method; the audio so far is below."
        )
    if finished:
        audio_seconds = take.total / take.sample_rate
        rtf = take.elapsed / audio_seconds if audio_seconds else 0.0
        return (
            f"<b>Done</b> in {take.elapsed:.1f} s with the <i>{take.method}</i> method: {take.total:,} samples × "
            f"{batch} variation(s) at <b>{rate:,.0f} samples/s</b> per variation. Real-time factor "
            f"<b>{rtf:.2f}</b> (generation time / audio length; below 1 is faster than real time)."
        )
    left = (take.total - take.done) / rate if rate > 0 else float("nan")
    bar = "█" * int(20 * frac) + "░" * (20 - int(20 * frac))
    return (
        f"<code>{bar}</code> {take.done:,} / {take.total:,} samples ({100 * frac:.0f}%) · {rate:,.0f} samples/s · "
        f"about {left:.1f} s left · <i>{take.method}</i> method"
    )


def generate_audio(
    store: ModelStore,
    model: str | None,
    audio: str | None,
    prime_seconds: float,
    seconds: float,
    temperature: float,
    top_k: float | None,
    variations: float,
    seed: float | None,
    class_id: float | None,
    trim: bool = True,
    match_level: bool = True,
    request: gr.Request | None = None,
    runs: Runs | None = None,
) -> Iterator[tuple]:
    """The Generate handler. Yields (status, *per slot: WAV file, player chunk, figure).

    `audio` is a path to the uploaded file (or None: generate from silence); `trim` and `match_level`
    prepare its primer (core.primer), and what was done to it heads the status (HTML). Each chunk the
    model makes goes to its slot's streaming player as 16-bit WAV bytes, after the primer as the model
    heard it, which the first update sends; the status follows every UPDATE_EVERY seconds. The last yield
    adds each slot's WAV (primer + continuation) and figure. A Cancel from the same browser session
    (`runs.cancel`) ends the run at its next chunk with that last yield for what was made. Unused
    slots are skipped. A StudioError becomes a gr.Error with its message.
    """
    run = runs.open(request.session_hash if request is not None else None) if runs is not None else ""
    try:
        if not model:
            raise ConfigError("choose a model first")
        net = store.get(model)
        settings = check_settings(net, seconds, temperature, top_k, variations, seed, class_id)
        primer = load_primer(audio, net.config.sample_rate, prime_seconds, trim=bool(trim),
                             match_level=bool(match_level), target=loudness_of(net.config))
        notes = "".join(f"{html.escape(note)}<br>" for note in primer.notes) if primer is not None else ""
        for warning in primer.warnings if primer is not None else ():
            gr.Warning(warning)
        # The first update clears the last run's figures and files and sends each player the primer as the model
        # hears it, so the audio encoder starts (and the first sound plays) while the model primes itself.
        primer_heard = heard(net, *((primer.audio, primer.gain) if primer is not None else (None,)))
        yield (notes + "Starting…", *_first_slots(net.config.sample_rate, primer_heard, settings.variations))
        last, take, cancelled = time.perf_counter(), None, False
        for take in run_continuation(net, primer, primer_heard, settings):
            cancelled = runs is not None and runs.cancelled(run)
            if cancelled:
                break
            new = time.perf_counter() - last >= UPDATE_EVERY and take.done < take.total
            last = time.perf_counter() if new else last
            status = notes + status_html(take, finished=False) if new else gr.skip()
            yield (status, *_slots(take, _chunk))
        with tempfile.TemporaryDirectory(prefix="studio-audio-") as folder:
            yield (notes + status_html(take, finished=True, cancelled=cancelled),
                   *_slots(take, lambda t, i: _final(t, i, Path(folder))))
    except StudioError as e:
        raise gr.Error(str(e), print_exception=False) from e
    finally:
        if runs is not None:
            runs.close(run)


def build(store: ModelStore) -> None:
    """Lay out the audio page inside the current Blocks context and wire its events."""
    entries = audio_models(store)
    first = entries[0] if entries else None
    gr.Markdown("## Continue audio\nUpload a clip (or record one); the model continues it. "
                "Leave it empty to generate from silence.")
    status = build_status()
    with gr.Row():
        with gr.Column(scale=1):
            model = model_picker(store, audio_models, model_summary)
            upload = gr.Audio(sources=["upload", "microphone"], type="filepath", label="conditioning audio")
            examples = gr.Examples([[asset(path), example_model(entries, bundle)] for path, _, bundle in EXAMPLES],
                                   [upload, model], example_labels=[label for _, label, _ in EXAMPLES],
                                   label="examples: click one to continue it with the chosen model")
            prime_seconds = gr.Slider(0.1, MAX_PRIME_SECONDS, value=1.0, step=0.1, label="prime seconds",
                                      info="the last N seconds of the upload prime the model")
            trim = gr.Checkbox(True, label="trim trailing silence",
                               info=f"the primer is the last N seconds before the clip's trailing silence: 10 ms "
                                    f"frames quieter than {SILENCE_DBFS:g} dBFS (RMS) at its end are cut first")
            match_level = gr.Checkbox(True, label="match level",
                                      info="the model hears the primer raised (or lowered) to the loudness it was "
                                           f"trained at ({Loudness()} for the music models); the output is scaled "
                                           "back to the clip's level")
            seconds = gr.Slider(0.1, MAX_SECONDS, value=2.0, step=0.1, label="seconds to generate")
            temperature = gr.Slider(0.0, 2.0, value=temperature_of(first), step=0.05, label="temperature",
                                    info="0 = greedy; choosing a model sets the temperature it is best sampled at")
            top_k = gr.Number(0, precision=0, minimum=0, label="top-k", info="sample among the k likeliest; 0 = off")
            variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="variations",
                                   info="generated together, in one batch")
            seed = gr.Number(0, precision=0, minimum=0, label="seed", info="blank = random")
            class_id = gr.Number(0, precision=0, minimum=0, label="class id", **class_props(first))
            with gr.Row():
                generate_button = gr.Button("Generate", variant="primary")
                cancel = gr.Button("Cancel", variant="stop", interactive=False)
        with gr.Column(scale=2):
            area = build_output_area(status, variations=1)

    def model_settings(path: str | None) -> tuple[gr.Number, float]:
        """The class box and the temperature for the chosen model."""
        entry = next((m for m in audio_models(store) if m["path"] == path), None)
        return gr.Number(**class_props(entry)), temperature_of(entry)

    runs = Runs()

    def stop(request: gr.Request) -> gr.Button:
        runs.cancel(request.session_hash)
        return gr.Button(interactive=False)

    inputs = [model, upload, prime_seconds, seconds, temperature, top_k, variations, seed, class_id, trim, match_level]
    results = [c for slot in area.slots for c in (slot[0], slot[2])]  # each slot's WAV and figure

    def generate(model, audio, prime_seconds, seconds, temperature, top_k, variations, seed, class_id, trim,
                 match_level, request: gr.Request) -> Iterator[tuple]:  # Gradio gives a gr.Request to a named hint
        yield from generate_audio(store, model, audio, prime_seconds, seconds, temperature, top_k, variations, seed,
                                  class_id, trim, match_level, request, runs)

    def generate_on_page(model, audio, prime_seconds, seconds, temperature, top_k, variations, seed, class_id, trim,
                         match_level, request: gr.Request) -> Iterator[tuple]:
        yield from on_page(generate(model, audio, prime_seconds, seconds, temperature, top_k, variations, seed,
                                    class_id, trim, match_level, request))

    # One event per click: its first update also flips the buttons and shows the output area. A second event
    # on the same click for those (outside the queue) would hold the run's request back until the browser has
    # its answer and has drawn the area, about 70 ms. While the run waits in the queue, the Generate button
    # shows Gradio's queue position.
    progress = dict(show_progress="minimal", show_progress_on=[generate_button])
    ui_outputs = [*area.outputs, generate_button, cancel, area.column]
    generate_button.click(generate_on_page, inputs, ui_outputs, api_visibility="private", **progress).then(
        finished, results[::2], [generate_button, cancel, *results], api_visibility="private")
    # A clicked example fills the upload, then runs exactly as Generate does, buttons and Cancel included.
    run_after_example(examples, generate_on_page, inputs, ui_outputs, **progress).then(
        finished, results[::2], [generate_button, cancel, *results], api_visibility="private")
    # The API's endpoint: the same run without the page's buttons (a button never shown).
    gr.Button(visible=False).click(generate, inputs, area.outputs, api_name="generate_audio")
    cancel.click(stop, None, cancel, queue=False, api_visibility="private")
    model.change(model_settings, model, [class_id, temperature], api_visibility="private")
    variations.change(visible_tabs, variations, area.tabs, api_visibility="private")


def _first_slots(sample_rate: int, primer: np.ndarray, variations: int) -> list:
    """Every slot's first update: no WAV, no figure; each used slot's player starts afresh on the primer."""
    start = wav_bytes(primer, sample_rate) if len(primer) else gr.skip()
    return [v for i in range(MAX_VARIATIONS) for v in [None, start if i < variations else gr.skip(), None]]


def _slots(take: Take, slot: Callable[[Take, int], list]) -> list:
    """slot(take, i) for the used slots; no WAV, no figure and no chunk for the others."""
    batch = take.continuation.shape[0]
    return [v for i in range(MAX_VARIATIONS) for v in (slot(take, i) if i < batch else [None, gr.skip(), None])]


def _chunk(take: Take, i: int) -> list:
    """The samples new in this take, for the player (which had the primer first)."""
    return [gr.skip(), wav_bytes(take.continuation[i, take.done - take.fresh:], take.sample_rate), gr.skip()]


def _final(take: Take, i: int, folder: Path) -> list:
    audio, sr = take.audio(i), take.sample_rate
    path = folder / f"variation_{i + 1}.wav"
    write_wav(path, audio, sr)
    return [str(path), gr.skip(), variation_figure(take.primer, take.continuation[i], sr)]
