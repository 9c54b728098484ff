"""End to end: the Sequences page's three handlers through gradio_client, against an app launched here.

The app serves a tiny random VRNN over JSB's 88 keys, a GHMM checkpoint with a learned filtering
proposal for 10 steps, and an audio WaveNet (which the page must not offer). Contract: a sample
shows the prefix and each continuation as separate pianoroll traces, plays and writes every roll,
and its per-frame bound sums to the FIVO bound of the true sequence under the same seed; the
filter draws (as SVG) its particles, lineages and ESS threshold over the exact posterior; the bounds put
IWAE above the ELBO and reach log p(x) exactly with the smoothing proposal; bad input is refused
with a message and the app keeps serving.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from core.checkpoints import save_checkpoint
from core.data.ghmm import sample_ghmm
from core.inference.bounds import estimate
from core.model_store import ModelStore
from core.models.ghmm import GaussianHMM, GHMMConfig
from core.models.ghmm_exact import kalman_smoother
from core.models.vrnn import VRNN, VRNNConfig
from core.models.wavenet import WaveNet
from pages.sequences_bounds import PARTICLE_COUNTS
from pages.sequences_filter import run_filter
from pages.sequences_models import UNTRAINED, held_out_rolls, music_models
from pages.sequences_music import MAX_CONTINUATIONS, SAMPLE_RATE, SECONDS_PER_STEP
from pages.sequences_particles_svg import particles_html, surviving_pairs
from tests.conftest import serving, tiny_audio_config


def tiny_vrnn(seed: int = 0) -> VRNN:
    """A random VRNN over JSB's keys with 8-d latents and JSB's training mean: samples in milliseconds."""
    torch.manual_seed(seed)
    return VRNN(VRNNConfig(latent_size=8, train_mean=held_out_rolls("jsb")[1].tolist())).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sequence-models")
    save_checkpoint(tiny_vrnn(), folder / "vrnn-tiny")
    save_checkpoint(GaussianHMM(GHMMConfig(num_timesteps=10, proposal="learned_filtering")), folder / "ghmm-learned")
    save_checkpoint(WaveNet(tiny_audio_config()), folder / "audio")
    return folder


@pytest.fixture(scope="module")
def client(models: Path) -> Iterator[Client]:
    with serving(models) as url:
        yield Client(url, verbose=False)


def array(column: list | dict) -> np.ndarray:
    """A trace's x, y or z: plotly sends numpy arrays as {"dtype", "bdata"[, "shape"]} (base64)."""
    if isinstance(column, dict):
        flat = np.frombuffer(base64.b64decode(column["bdata"]), dtype=column["dtype"])
        shape = column.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.array(column, dtype=float)


def traces(plot: dict) -> list[dict]:
    return json.loads(plot["plot"])["data"]


def named(plot: dict) -> dict[str, dict]:
    return {t["name"]: t for t in traces(plot)}


def test_the_music_tab_lists_sequence_checkpoints_then_the_untrained_model(models: Path) -> None:
    entries = music_models(ModelStore([models], device="cpu"))
    assert [m["path"] for m in entries] == [str(models / "vrnn-tiny"), UNTRAINED]
    assert "untrained" in entries[-1]["name"]


# -- Music ------------------------------------------------------------------------------------------


def test_a_sample_shows_prefix_and_continuations_plays_and_writes_them(client: Client, models: Path) -> None:
    out = client.predict(str(models / "vrnn-tiny"), "jsb", 3, 8, 12, 2, 5, api_name="/sample_pianoroll")
    rolls, _, status, truth, *slots, midi = out
    assert len(slots) == MAX_CONTINUATIONS and slots[2:] == [None] * (MAX_CONTINUATIONS - 2)
    roll = held_out_rolls("jsb")[0][3]
    heatmaps = traces(rolls)
    assert [t["name"] for t in heatmaps] == ["prefix", "true continuation", "prefix", "sample 1", "prefix", "sample 2"]
    prefix, continuation = heatmaps[0], heatmaps[1]
    assert array(prefix["x"]).tolist() == list(range(8)) and array(continuation["x"]).tolist() == list(range(8, 20))
    keys = array(prefix["y"]).astype(int) - 21
    assert np.array_equal(array(continuation["z"]), roll[8:20, keys].T)  # the truth, keys as rows
    assert np.array_equal(array(prefix["z"]), roll[:8, keys].T)
    assert prefix["colorscale"] != continuation["colorscale"]  # told apart by colour ...
    assert [s["x0"] for s in json.loads(rolls["plot"])["layout"]["shapes"]] == [7.5] * 3  # ... and a line per row
    for path in (truth, slots[0], slots[1]):
        audio, rate = sf.read(path, dtype="int16")
        assert rate == SAMPLE_RATE and len(audio) == 20 * round(SECONDS_PER_STEP * SAMPLE_RATE)
    # Files the page wrote (a content-named cache file per array would be written by every user at once)
    assert [Path(p).name for p in (truth, *slots[:2])] == [f"jsb-3-{k}.wav" for k in ("truth", "sample-1", "sample-2")]
    assert [Path(m).name for m in midi] == [f"jsb-3-{k}.mid" for k in ("truth", "sample-1", "sample-2")]
    assert all(Path(m).read_bytes()[:4] == b"MThd" for m in midi)
    assert "after 8 frames" in status and "seed 5" in status


def test_the_bound_per_frame_sums_to_fivo_of_the_true_sequence_and_a_seed_repeats_it(client: Client,
                                                                                      models: Path) -> None:
    args = (str(models / "vrnn-tiny"), "jsb", 3, 8, 12, 1, 5)
    bound = named(client.predict(*args, api_name="/sample_pianoroll")[1])
    per_frame = array(bound["FIVO per frame"]["y"])
    assert len(per_frame) == 20 and len(array(bound["independent keys"]["y"])) == 20
    x = torch.from_numpy(held_out_rolls("jsb")[0][3][:20]).unsqueeze(0)
    model = tiny_vrnn()
    torch.manual_seed(5)
    with torch.no_grad():
        fivo = estimate(model, x, None, "fivo", 16, threshold=0.5).log_p_hat
    assert per_frame.sum() == pytest.approx(float(fivo), abs=1e-3)
    again = named(client.predict(*args, api_name="/sample_pianoroll")[1])
    assert np.array_equal(array(again["FIVO per frame"]["y"]), per_frame)


def test_the_untrained_model_is_labelled_untrained_and_a_short_sequence_shortens_the_continuation(
        client: Client) -> None:
    length = len(held_out_rolls("jsb")[0][0])
    rolls, _, status, *_, midi = client.predict(UNTRAINED, "jsb", 0, length - 5, 64, 1, 0,
                                                api_name="/sample_pianoroll")
    assert "untrained" in status and "5 rather than 64" in status
    assert [Path(m).name for m in midi] == ["jsb-0-truth.mid", "untrained-jsb-0-sample-1.mid"]
    assert len(array(named(rolls)["sample 1"]["x"])) == 5


# -- Particles --------------------------------------------------------------------------------------


def circles(drawn: str) -> int:
    """How many particles the Particles tab's SVG draws."""
    return drawn.count('<circle class="p"')


def test_the_filter_draws_particles_lineages_and_the_ess_threshold_over_the_exact_posterior(client: Client,
                                                                                            models: Path) -> None:
    cloud, ess, status = client.predict("filtering", 64, 0.5, 3, 20, 0, api_name="/filter_particles")
    run = run_filter(ModelStore([models], device="cpu"), "filtering", 64, 0.5, 3, 20, 0)  # the same seeds, here
    assert cloud == particles_html(run) and circles(cloud) == 64 * 20  # the page draws this run
    x = sample_ghmm(1, 20, 0.1, seed=3).observations[..., 0].double()
    mean, variance = kalman_smoother(x, 0.1, 0.1)
    assert np.allclose(run.mean, mean[0].numpy()) and np.allclose(run.std, variance[0].sqrt().numpy())
    assert np.allclose(run.observations, x[0].numpy(), atol=1e-6)
    links = surviving_pairs(run.lineages)
    assert {t for t, _, _ in links} == set(range(19)) and cloud.count('<line class="surv"') == len(links)
    lines = named(ess)
    assert array(lines["threshold"]["y"]).tolist() == [32.0] * 20
    values, hit = array(lines["ESS"]["y"]), array(lines["resampled"]["x"]).astype(int)
    assert len(hit) and all(values[hit] <= 32) and all(np.delete(values, hit) > 32)  # resampled exactly at ESS <= 32
    assert np.allclose(values, run.ess) and cloud.count('<line class="resample"') == len(hit)
    roots = len({a for t, a, _ in links if t == 0})
    assert f"descend from **{roots}** of the 64" in status and "exact log p(x)" in status


def test_a_threshold_of_zero_never_resamples(client: Client) -> None:
    _, ess, status = client.predict("prior", 16, 0, 1, 10, 0, api_name="/filter_particles")
    assert len(array(named(ess)["resampled"]["x"])) == 0 and "after 0 of 10 steps" in status


def test_a_learned_proposal_from_a_checkpoint_filters_within_its_steps(client: Client, models: Path) -> None:
    cloud, _, _ = client.predict(str(models / "ghmm-learned"), 8, 0.5, 0, 10, 0, api_name="/filter_particles")
    assert circles(cloud) == 8 * 10
    with pytest.raises(AppError, match="at most 10 steps"):
        client.predict(str(models / "ghmm-learned"), 8, 0.5, 0, 11, 0, api_name="/filter_particles")


# -- Bounds -----------------------------------------------------------------------------------------


def test_iwae_is_above_the_elbo_and_the_exact_line_is_log_p_x(client: Client) -> None:
    plot, table = client.predict("prior", 1, 10, 8, 0.5, api_name="/bounds_vs_particles")
    lines = named(plot)
    assert array(lines["ELBO"]["x"]).tolist() == list(PARTICLE_COUNTS)
    assert json.loads(plot["plot"])["layout"]["xaxis"]["type"] == "log"
    x = sample_ghmm(1, 10, 0.1, seed=1).observations.double()
    exact = float(GaussianHMM(GHMMConfig(num_timesteps=10)).double().exact_log_likelihood(x)[0])
    assert array(lines["exact log p(x)"]["y"]) == pytest.approx([exact, exact])
    elbo, iwae, fivo = (array(lines[n]["y"]) for n in ("ELBO", "IWAE", "FIVO"))
    assert all(iwae >= elbo) and iwae[0] == elbo[0]  # one particle: IWAE is the ELBO
    assert iwae[-1] > iwae[0] and fivo[-1] > fivo[0] and all(array(lines["IWAE"]["error_y"]["array"]) >= 0)
    assert f"{exact:.3f}" in table


def test_the_smoothing_proposal_makes_iwae_exact_at_every_particle_count(client: Client) -> None:
    plot, _ = client.predict("smoothing", 2, 12, 4, 0.5, api_name="/bounds_vs_particles")
    lines = named(plot)
    exact = array(lines["exact log p(x)"]["y"])[0]
    assert np.allclose(array(lines["IWAE"]["y"]), exact, atol=1e-9)
    assert np.allclose(array(lines["IWAE"]["error_y"]["array"]), 0, atol=1e-9)


# -- bad input --------------------------------------------------------------------------------------


def test_bad_requests_give_a_message_and_the_page_keeps_working(client: Client, models: Path) -> None:
    vrnn = str(models / "vrnn-tiny")
    for args, message in (((None, "jsb", 0, 8, 8, 1, 0), "choose a model"),
                          ((vrnn, "jsb", 999, 8, 8, 1, 0), "test sequence must be a whole number in \\[0, 76\\]"),
                          ((str(models / "audio"), "jsb", 0, 8, 8, 1, 0), "not a VRNN or SRNN"),
                          (("/etc", "jsb", 0, 8, 8, 1, 0), "not in this app's model folders")):
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/sample_pianoroll")
    with pytest.raises(AppError, match="less than minimum value 1"):
        client.predict("prior", 0, 0.5, 0, 10, 0, api_name="/filter_particles")
    with pytest.raises(AppError, match="not a GHMM checkpoint"):
        client.predict(vrnn, 8, 0.5, 0, 10, 0, api_name="/filter_particles")
    with pytest.raises(AppError, match="less than minimum value 1"):
        client.predict("prior", 0, 10, 0, 0.5, api_name="/bounds_vs_particles")
    cloud, _, _ = client.predict("prior", 4, 0.5, 0, 5, 0, api_name="/filter_particles")
    assert circles(cloud) == 20
