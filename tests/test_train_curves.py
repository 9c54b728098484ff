"""The Train page's curves: a bound run (VRNN, SRNN, GHMM) plots its bound in nats per timestep, the others
their NLL in bits; a preset's bound survives the page's form."""

from __future__ import annotations

import json

from core.jobs import JobManager
from core.train import main as train
from core.training import config as train_config
from pages.train_form import config_from_form, preset_values, presets
from pages.train_runs import curve_values, run_status


def test_a_bound_run_started_from_a_preset_plots_its_logged_bound_per_timestep(tmp_path):
    values = preset_values(presets()["vrnn_jsb_elbo"])  # the form as the preset fills it
    values[1] = json.dumps({**json.loads(values[1]), "latent_size": 8})
    values[10:14] = [4, 3, 3, 1]  # batch size, steps, validate every, log every
    values[14] += "\ntrain.valid_batches=1"
    config = config_from_form(*values)
    assert train_config.from_dict(config).objective.bound == "elbo", "the preset's bound survives the form"
    (tmp_path / "elbo.json").write_text(json.dumps(config))
    runs = tmp_path / "runs"
    assert train(["--config", str(tmp_path / "elbo.json"), "--run-dir", str(runs / "tiny"), "--no-progress"]) == 0

    _, figure, *_ = run_status(JobManager(runs), "tiny")
    rows = [json.loads(line) for line in (runs / "tiny" / "metrics.jsonl").read_text().splitlines()]
    train_rows, valid_rows = ([r for r in rows if r["split"] == s] for s in ("train", "valid"))
    assert figure.layout.yaxis.title.text == "ELBO bound, nats per timestep"
    curves = {trace.name: trace for trace in figure.data}
    assert list(curves["train ELBO"].x) == [1, 2, 3] and list(curves["valid ELBO"].x) == [3]
    assert list(curves["train ELBO"].y) == [r["elbo_nats"] for r in train_rows]
    assert list(curves["valid ELBO"].y) == [r["elbo_nats"] for r in valid_rows]
    assert all(v < 0 for v in [*curves["train ELBO"].y, *curves["valid ELBO"].y]), "a log-likelihood bound"


def test_older_bound_rows_plot_minus_their_nll_and_audio_models_keep_bits_per_sample():
    value, unit, name = curve_values({"objective": {"name": "bound", "bound": "fivo"}})
    assert (unit, name) == ("FIVO bound, nats per timestep", "FIVO")
    assert value({"split": "train", "nll_nats": 7.5}) == -7.5 and value({"split": "valid", "fivo_nats": -7.0}) == -7.0
    assert value({"split": "valid", "nll_nats": 7.5}) is None, "a valid row without its bound is not guessed"
    for model in ({"model_type": "wayback", "sampling_frequency": 11025}, {"model_type": "wavenet",
                                                                           "sample_rate": 16000}):
        value, unit, name = curve_values({"model": model, "objective": {"name": "nll"}})
        assert (unit, name, value({"bits": 3.0})) == ("bits per sample", "NLL", 3.0)
    assert curve_values({"model": {"model_type": "pixelcnn"}})[1] == "bits per dim"
    assert curve_values({"model": {"model_type": "wavenet", "extra": {"image_shape": [28, 28]}}})[1] == "bits per dim"
