"""End to end: the app served on a free port, driven by gradio_client like any API user.

Contract checked here: `generate_audio` returns, per variation, the primer as the model heard
it (the upload's last `prime_seconds`, resampled to the model's rate, quantised, decoded)
followed by the continuation, as int16 WAV. With level matching both are scaled back by the gain
the primer was raised by; trailing silence is cut before the primer is taken.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import pages.audio as audio_page
import pages.audio_models as audio_models_page
from app import build_app, launch
from core.audio import read_audio, to_int16
from core.checkpoints import save_checkpoint
from core.continuation import DEFAULT_TEMPERATURE, dequantise, quantise
from core.errors import AudioError, CheckpointError, ConfigError
from core.model_store import ModelStore
from core.models.wavenet import WaveNet
from core.pitch import PITCH_CLASSES
from pages.audio_output import OUTPUTS_PER_VARIATION, Runs
from pages.audio_training import trained_on
from tests.conftest import TINY_SAMPLE_RATE, free_port, tiny_audio_config

SR = TINY_SAMPLE_RATE  # uploads are written at 16 kHz so they are resampled
ROOT = Path(__file__).resolve().parents[1]
MELODIES = ROOT / "checkpoints" / "melodies-wavenet"  # the bundled 8 kHz audio model
OUTPUTS = OUTPUTS_PER_VARIATION


@pytest.fixture(scope="module")
def model_dir(tiny_audio_models: Path) -> Path:
    return tiny_audio_models


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    t = np.arange(8000) / 16000
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), 16000, subtype="PCM_16")
    return path


def generate(client: Client, model_dir: Path, audio: Path | None = None, **settings):
    args = dict(prime_seconds=0.1, seconds=0.1, temperature=1.0, top_k=0, variations=1, seed=0, class_id=0)
    args.update(settings)
    return client.predict(model=str(model_dir / "tiny"), audio=handle_file(str(audio)) if audio else None,
                          api_name="/generate_audio", **args)


def pcm(chunk: bytes) -> np.ndarray:
    """The int16 samples of a streamed chunk (16-bit WAV bytes at the model's rate)."""
    data, rate = sf.read(io.BytesIO(chunk), dtype="int16")
    assert rate == SR
    return data


def samples(result, variation: int = 0) -> np.ndarray:
    """The int16 samples of one variation's WAV download."""
    data, rate = sf.read(result[1 + OUTPUTS * variation], dtype="int16")
    assert rate == SR
    return data


def test_output_is_primer_as_heard_then_continuation(client: Client, model_dir: Path, wav: Path) -> None:
    result = generate(client, model_dir, wav, prime_seconds=0.25, seconds=0.25, match_level=False)
    model = WaveNet(tiny_audio_config())
    heard = dequantise(model, quantise(model, read_audio(wav, SR)[-2000:]))
    audio = samples(result)
    assert len(audio) == 2000 + 2000
    np.testing.assert_array_equal(audio[:2000], to_int16(heard))
    assert result[3] is not None  # the figure: waveform over spectrogram
    assert "Done" in result[0] and "samples/s" in result[0] and "Real-time factor" in result[0]
    assert all(x is None for x in result[1 + OUTPUTS::OUTPUTS])  # no WAV in the unused variation slots


def test_greedy_generation_is_deterministic(client: Client, model_dir: Path) -> None:
    first = generate(client, model_dir, temperature=0, variations=2, seed=None)
    second = generate(client, model_dir, temperature=0, variations=2, seed=None)
    outputs = [samples(r, v) for r in (first, second) for v in range(2)]
    assert len(outputs[0]) == 800
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])


def _not_audio(path: Path) -> None:
    path.write_text("this is not audio")


def _empty(path: Path) -> None:
    sf.write(path, np.zeros(0, np.float32), 16000, subtype="PCM_16")


def _nans(path: Path) -> None:
    sf.write(path, np.full(800, np.nan, np.float32), 16000, subtype="FLOAT")


@pytest.mark.parametrize(("make", "message"), [(_not_audio, "could not read"), (_empty, "no samples"),
                                               (_nans, "NaN")])
def test_bad_upload_shows_its_message_and_app_keeps_serving(client: Client, model_dir: Path, wav: Path,
                                                            tmp_path: Path, make, message: str) -> None:
    bad = tmp_path / "bad.wav"
    make(bad)
    with pytest.raises(AppError, match=message):
        generate(client, model_dir, bad)
    assert len(samples(generate(client, model_dir, wav))) == 1600


def test_generation_can_be_cancelled(client: Client, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks, original = [], audio_page.continue_audio

    def counting(*args, **kwargs):  # paced, or the fused kernel finishes 20 s of the tiny model before the cancel
        for chunk in original(*args, **kwargs):
            chunks.append(chunk.shape[1])
            time.sleep(0.05)
            yield chunk

    monkeypatch.setattr(audio_page, "continue_audio", counting)
    job = client.submit(model=str(model_dir / "tiny"), audio=None, prime_seconds=0.1, seconds=20.0, temperature=1.0,
                        top_k=0, variations=1, seed=0, class_id=0, api_name="/generate_audio")
    deadline = time.monotonic() + 30
    while len(chunks) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(chunks) >= 2, "generation did not start"
    job.cancel()
    time.sleep(2.0)  # the generator runs on to its next yield (at most UPDATE_EVERY + one chunk)
    stopped_at = len(chunks)
    time.sleep(1.5)
    assert len(chunks) == stopped_at and sum(chunks) < 20 * SR
    monkeypatch.undo()
    assert len(samples(generate(client, model_dir))) == 800


def test_requests_beyond_the_concurrency_limit_queue_and_share_one_unchanged_model(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore([model_dir], device="cpu")
    path = str(model_dir / "tiny")
    model = store.get(path)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    lock, active, most = threading.Lock(), [0], [0]
    original = audio_page.continue_audio

    def paced(*args, **kwargs):  # each request takes a while, so they overlap
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            for chunk in original(*args, **kwargs):
                time.sleep(0.15)
                yield chunk
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(audio_page, "continue_audio", paced)
    demo = build_app(store, max_concurrency=2)
    client = Client(launch(demo, port=free_port(), block=False), verbose=False)
    try:
        jobs = [client.submit(model=path, audio=None, prime_seconds=0.1, seconds=0.5, temperature=1.0, top_k=0,
                              variations=1, seed=seed, class_id=0, api_name="/generate_audio") for seed in range(5)]
        results = [job.result(timeout=120) for job in jobs]
    finally:
        demo.close()
    assert most[0] == 2, f"{most[0]} generations ran at once; the limit is 2"
    assert all(len(samples(r)) == SR // 2 for r in results)  # none refused: the other three waited their turn
    assert store.get(path) is model, "one loaded model serves every request"
    assert all(v.equal(weights[k]) for k, v in model.state_dict().items()), "generation changed the model"


def test_upload_over_the_size_limit_is_refused(wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_page, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(AudioError, match="over the limit"):
        audio_page.load_primer(str(wav), SR, 1.0)


def test_class_conditional_model_needs_a_class_in_range() -> None:
    model = WaveNet(tiny_audio_config(n_classes=3))
    assert audio_page.check_settings(model, 1.0, 1.0, 0, 1, 0, 2).class_id == 2
    with pytest.raises(ConfigError, match="class id"):
        audio_page.check_settings(model, 1.0, 1.0, 0, 1, 0, 3)


def test_a_pitch_conditioned_model_takes_its_class_from_the_primer_and_the_page_hides_the_class_box(
        wav: Path, tmp_path: Path) -> None:
    """Its class is the primer's pitch register (core.pitch), so the class box is hidden, whatever it holds is
    ignored, and the model's description says what the classes are. Level matching aims at the loudness its
    config names (core.primer.loudness_of), and the page samples it at the temperature its config suggests."""
    torch.manual_seed(0)
    speech = dict(n_classes=PITCH_CLASSES, classes_from="pitch",
                  extra={"loudness": {"measure": "rms", "dbfs": -20}, "temperature": 1.0})
    save_checkpoint(WaveNet(tiny_audio_config(**speech)), tmp_path / "voice")
    store = ModelStore([tmp_path], device="cpu")
    (entry,) = audio_models_page.audio_models(store)
    assert audio_models_page.class_props(entry)["visible"] is False
    assert "Pitch-conditioned" in audio_models_page.model_summary(entry)
    assert audio_models_page.temperature_of(entry) == 1.0 and "temperature 1 by default" in \
        audio_models_page.model_summary(entry)
    model = store.get(entry["path"])
    assert audio_page.check_settings(model, 1.0, 1.0, 0, 1, 0, 99).class_id is None
    updates = list(audio_page.generate_audio(store, entry["path"], str(wav), 0.25, 0.1, 1.0, 0, 1, 0, 99, True, True))
    assert "to -20 dBFS RMS, the model&#x27;s training level" in updates[0][0]  # its own loudness, not a peak
    assert updates[-1][0].count("-20 dBFS RMS") == 1
    save_checkpoint(WaveNet(tiny_audio_config(n_classes=3)), tmp_path / "picked")
    picked = next(m for m in audio_models_page.audio_models(ModelStore([tmp_path], device="cpu"))
                  if m["path"].endswith("picked"))
    assert audio_models_page.class_props(picked) == dict(visible=True, maximum=2, info="0 … 2")
    assert audio_models_page.temperature_of(picked) == DEFAULT_TEMPERATURE == 0.85
    assert audio_models_page.temperature_of(None) == 0.85


def test_model_store_skips_bad_folders_and_caches_loads(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"")
    run = tmp_path / "run"
    save_checkpoint(WaveNet(tiny_audio_config()), run / "checkpoints" / "step_000010")
    store = ModelStore([model_dir, tmp_path, tmp_path / "missing"], device="cpu")
    listed = {m["name"]: m for m in store.list_models()}
    assert set(listed) == {f"{model_dir.name}/tiny", f"{tmp_path.name}/run (step_000010)"}
    tiny = listed[f"{model_dir.name}/tiny"]
    assert tiny["receptive_field"] == 16 and tiny["parameters"] == sum(p.numel() for p in WaveNet(tiny_audio_config())
                                                                       .parameters())
    assert store.get(tiny["path"]) is store.get(tiny["path"])
    with pytest.raises(CheckpointError):
        store.get(tmp_path / "broken")
    with pytest.raises(CheckpointError, match="not in this app's model folders"):
        ModelStore([tmp_path], device="cpu").get(tiny["path"])


def _run_handler(store: ModelStore, upload: Path, *args) -> tuple[str, list[np.ndarray]]:
    """The Generate handler called as the page calls it (prime 1 s, seed 0): its last status and WAVs."""
    return _last(audio_page.generate_audio(store, str(MELODIES), str(upload), 1.0, *args))


def _last(handler) -> tuple[str, list[np.ndarray]]:
    """A handler's last status, and each used slot's WAV (float) read as it is given (it is deleted after)."""
    for result in handler:
        wavs = [sf.read(path)[0] for path in result[1::OUTPUTS] if isinstance(path, str)]
    return result[0], wavs


def test_clips_ending_in_a_second_of_silence_get_continuations_that_depend_on_them(tmp_path: Path) -> None:
    """Issue #14: the last second of a clip that ends in silence is silence, so without trimming every such
    clip got the same continuation for a seed. The primers (the last second of each tone) have the same peak,
    so level matching raises both alike and only what the model heard can make them differ."""
    store = ModelStore([MELODIES.parent], device="cpu")
    t = np.arange(2 * SR) / SR
    continuations = []
    for freq in (262.0, 392.0):
        sound = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3))
        clip = np.concatenate([0.5 * sound / np.abs(sound[-SR:]).max(), np.zeros(SR)]).astype(np.float32)
        sf.write(tmp_path / f"{freq:g}.wav", clip, SR, subtype="FLOAT")
        status, wavs = _run_handler(store, tmp_path / f"{freq:g}.wav", 0.25, 1.0, 0, 1, 0, 0)
        continuations.append(wavs[0][SR:])  # variation 1, past the primer
    assert len(continuations[0]) == 2000
    assert not np.array_equal(*continuations)
    assert "Cut 1.00 s of trailing silence" in status


def test_a_quiet_primer_level_matched_is_continued_at_its_own_level(tmp_path: Path) -> None:
    """Issue #14: a -40 dBFS primer; the model hears it at -1 dBFS, and the continuation comes back at the
    primer's level instead of several times louder."""
    store = ModelStore([MELODIES.parent], device="cpu")
    sf.write(tmp_path / "quiet.wav", 0.01 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR), SR, subtype="FLOAT")
    status, wavs = _run_handler(store, tmp_path / "quiet.wav", 0.5, 0.85, 0, 2, 0, 0, True, True)
    assert "Level matched: primer +39.0 dB" in status
    for audio in wavs:
        primer_peak, continuation_peak = np.abs(audio[:SR]).max(), np.abs(audio[SR:]).max()
        assert primer_peak == pytest.approx(0.01, rel=0.05)
        assert 0.25 * primer_peak < continuation_peak < 2 * primer_peak


def test_a_cancelled_run_gives_its_partial_audio_figure_and_download(model_dir: Path) -> None:
    """Cancel (from the run's browser session) stops the handler at its next chunk; its last yield still has
    what was made: the WAV of the continuation so far (no primer here), the figure, and 'Cancelled at N %'."""
    store, runs = ModelStore([model_dir], device="cpu"), Runs()
    request = SimpleNamespace(session_hash="session-a")
    handler = audio_page.generate_audio(store, str(model_dir / "tiny"), None, 0.1, 20.0, 1.0, 0, 2, 0, 0,
                                        request=request, runs=runs)
    streamed = []
    for result in handler:
        chunk = result[2]  # variation 1's player: the samples new in this chunk, as WAV bytes
        if isinstance(chunk, bytes):
            streamed.append(pcm(chunk))
            if len(streamed) == 3:
                runs.cancel("session-b")  # another session's Cancel does not stop this run
            if len(streamed) == 5:
                runs.cancel("session-a")
        if isinstance(result[1], str):  # the last yield
            wav, _ = sf.read(result[1], dtype="int16")
            assert result[3] is not None and isinstance(result[1 + OUTPUTS], str)  # its figure; variation 2's WAV
    made = np.concatenate(streamed)
    assert len(streamed) == 5 and len(made) == 5 * SR // 10
    assert len(made) <= len(wav) <= len(made) + SR // 10  # at most the chunk made as the Cancel came
    np.testing.assert_array_equal(wav[:len(made)], made)  # the download starts with what was streamed
    assert f"Cancelled at {100 * len(wav) / (20 * SR):.0f} %" in result[0]
    runs.cancel("session-a")
    assert len(list(audio_page.generate_audio(store, str(model_dir / "tiny"), None, 0.1, 0.2, 1.0, 0, 1, 0, 0,
                                              request=request, runs=runs))) > 2, "a stale Cancel stopped a new run"


def test_the_first_update_gives_each_used_player_the_primer_and_the_rest_only_new_samples(model_dir: Path,
                                                                                         wav: Path) -> None:
    """Time to first audio: the players get the primer (as the model heard it) before the model has made a
    sample, so the stream's encoder starts while the model primes; the chunks after it add up to the WAV."""
    store = ModelStore([model_dir], device="cpu")
    updates, wavs = [], []
    for update in audio_page.generate_audio(store, str(model_dir / "tiny"), str(wav), 0.25, 0.25, 1.0, 0, 2, 0, 0,
                                            True, False):
        updates.append(update)
        wavs = [sf.read(update[1 + OUTPUTS * i], dtype="int16")[0] for i in range(2)] if isinstance(update[1], str) \
            else wavs
    first = updates[0]
    assert first[0].endswith("Starting…")
    model = WaveNet(tiny_audio_config())
    heard = to_int16(dequantise(model, quantise(model, read_audio(wav, SR)[-SR // 4:])))
    for i in range(audio_page.MAX_VARIATIONS):
        player = first[2 + OUTPUTS * i]
        if i < 2:
            np.testing.assert_array_equal(pcm(player), heard)
            streamed = np.concatenate([pcm(u[2 + OUTPUTS * i]) for u in updates if isinstance(u[2 + OUTPUTS * i],
                                                                                              bytes)])
            np.testing.assert_array_equal(streamed, wavs[i])
        else:
            assert not isinstance(player, bytes), "an unused slot's player got audio"


def test_one_click_of_generate_sends_one_request_that_also_flips_the_buttons(model_dir: Path) -> None:
    """A second, unqueued event on the same click (for the buttons) held the run's request back by its round
    trip, about 70 ms of the time to first audio; the API keeps its own endpoint with the area's outputs."""
    demo = build_app(ModelStore([model_dir], device="cpu"))
    config = demo.get_config_file()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("value") == "Generate")
    on_click = [d for d in config["dependencies"] if (button, "click") in map(tuple, d["targets"])]
    assert len(on_click) == 1 and on_click[0]["queue"] is not False
    outputs = set(on_click[0]["outputs"])
    assert button in outputs
    api = [d for d in config["dependencies"] if d.get("api_name") == "generate_audio"]
    assert len(api) == 1 and button not in api[0]["outputs"]
    assert len(api[0]["outputs"]) == 1 + OUTPUTS * audio_page.MAX_VARIATIONS


def test_the_model_summary_says_what_the_model_was_trained_on_and_what_that_makes_of_speech(model_dir: Path) -> None:
    listed = {Path(m["path"]).name: m for m in ModelStore([MELODIES.parent, model_dir], device="cpu").list_models()}
    melodies = audio_models_page.model_summary(listed["melodies-wavenet"])
    assert "Trained on: the soprano lines of the first 160 Bach chorales" in melodies
    assert "**a melody model**: speech and noise come out as sustained notes" in melodies
    assert "tone model" in audio_models_page.model_summary(listed["tones-wavenet"])
    assert listed["tiny"]["data"] is None and "Trained on" not in audio_models_page.model_summary(listed["tiny"])
    # The data's folder speaks before its card: a speech model fine-tuned from the melody model is a speech model.
    speech = trained_on({"kind": "audio_folder", "root": "data/speech16k",
                         "card": "3.0 h of English sentences ...; fine-tuned from melodies-wavenet"})
    assert "**a speech model**" in speech and "melody model" not in speech
    assert "**a melody model**" in trained_on({"kind": "audio_folder", "root": "uploads/x", "card": "Bach chorales"})


def test_each_example_chooses_the_bundled_model_made_for_its_sound_else_the_first_listed(model_dir: Path) -> None:
    listed = audio_models_page.audio_models(ModelStore([MELODIES.parent, model_dir], device="cpu"))
    for _, label, bundle in audio_page.EXAMPLES:
        named = [m["path"] for m in listed if Path(m["path"]).name == bundle]
        assert audio_models_page.example_model(listed, bundle) == (named[0] if named else listed[0]["path"]), label
    assert Path(audio_models_page.example_model(listed, "tones-wavenet")).name == "tones-wavenet"
    assert Path(audio_models_page.example_model(listed, "melodies-wavenet")).name == "melodies-wavenet"
    tiny = audio_models_page.audio_models(ModelStore([model_dir], device="cpu"))
    assert audio_models_page.example_model(tiny, "speech-wavenet") == tiny[0]["path"]
    assert audio_models_page.example_model([], "speech-wavenet") is None


def test_the_page_starts_on_the_melody_wavenet_not_the_barely_trained_recurrent_bundles(model_dir: Path) -> None:
    listed = audio_models_page.audio_models(ModelStore([MELODIES.parent, model_dir], device="cpu"))
    assert Path(listed[0]["path"]).name == audio_models_page.DEFAULT_MODEL == "melodies-wavenet"
    names = [Path(m["path"]).name for m in listed]
    assert {"melodies-stack-gru", "melodies-wayback-gru", "tones-wavenet", "tiny"} <= set(names[1:])
