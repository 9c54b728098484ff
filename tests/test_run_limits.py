"""The bounds on a run started from the app (core.run_limits) and the bounded data check (core.data_check).

Every bound is refused with a message naming its field, before any process starts; the data of a
run is built in a child process, so checking even a large data set leaves the app's memory as it was.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_jobs import tiny_config

from core.data import build_split
from core.errors import ConfigError
from core.jobs import JobManager
from core.run_limits import RunLimits, parameter_count
from core.training import config as train_config

MIB = 2**20


def rss_bytes() -> int:
    """This process's resident memory now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


FOURIER = ["data.kind=fourier", "model.quantization_levels=127", "model.codec=linear", "model.sample_rate=0",
           "model.local_channels=1"]


@pytest.mark.parametrize("overrides, kwargs, message", [
    (["train.max_steps=1000001"], {}, "train.max_steps must be at most 1,000,000"),
    (["train.batch_size=1025"], {}, "train.batch_size must be at most 1,024"),
    (["train.keep_checkpoints=11"], {}, "train.keep_checkpoints must be at most 10"),
    (["train.max_steps=1000", "train.keep_every=1"], {}, "train.keep_every=1 would keep 1,000 checkpoints"),
    (["train.max_steps=1000000", "train.log_every=1"], {}, "train.log_every=1 means 1,000,000 times"),
    (["train.max_steps=1000000", "train.valid_every=5", "train.log_every=100"], {},
     "train.valid_every=5 means 200,000 times"),
    (["model.residual_channels=4096", "model.dilation_channels=4096"], {}, "parameters; at most 50,000,000"),
    (["data.clips=100", "data.seconds=60"], {}, "data.clips x data.seconds x model.sample_rate = 112 clips"),
    (["data.seconds=1e300"], {}, "x 1e+300 s x 8,000 Hz"),
    ([*FOURIER, "data.fourier_curves=100000"], {}, "data.fourier_curves x data.fourier_length = 112,500 curves"),
    (["data.kind=ghmm", "model.model_type=ghmm", "data.sequences=3000000"], {}, "data.sequences x data.steps"),
])
def test_each_size_over_its_bound_is_refused_naming_the_field(tmp_path, overrides, kwargs, message) -> None:
    jobs = JobManager(tmp_path / "runs")
    config = tiny_config(*overrides)
    if "model.model_type=ghmm" in overrides:
        config = {"model": {"model_type": "ghmm"}, "data": config["data"], "train": config["train"]}
    with pytest.raises(ConfigError, match=re.escape(message)):
        jobs.start(config, device="cpu")
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_processes_over_the_bound_are_refused_naming_the_field(tmp_path) -> None:
    jobs = JobManager(tmp_path / "runs", limits=RunLimits(processes=1))
    with pytest.raises(ConfigError, match="processes must be at most 1 on this server, got 2"):
        jobs.check(tiny_config(), device="cpu", processes=2)


def test_the_presets_are_within_the_bounds() -> None:
    from core.run_limits import check_limits

    root = Path(__file__).resolve().parents[1]
    checked = 0
    for path in sorted((root / "configs").glob("*.json")):
        try:
            cfg = train_config.load(path)
        except ConfigError as e:  # the speech presets read statistics from data/speech16k, rendered, not shipped
            assert "data/speech16k" in str(e) and not (root / "data" / "speech16k").is_dir(), (path, e)
            continue
        check_limits(cfg, 1, RunLimits())
        checked += 1
    assert checked >= 15


def test_the_model_size_is_counted_without_allocating_and_matches_a_built_model() -> None:
    from core.models import build_model

    cfg = train_config.from_dict(tiny_config())
    assert parameter_count(cfg) == sum(p.numel() for p in build_model(cfg.model_config()).parameters())
    huge = train_config.from_dict(tiny_config("model.residual_channels=65536", "model.dilation_channels=65536"))
    before = rss_bytes()
    assert parameter_count(huge) > 10**10  # 40 GB of float32 if it were allocated
    assert rss_bytes() - before < 20 * MIB


@pytest.mark.parametrize("overrides", [["data.clips=5", "data.seconds=0.7"], [*FOURIER, "data.fourier_curves=40"]])
def test_a_footprint_counts_the_values_the_splits_hold(overrides) -> None:
    cfg = train_config.from_dict(tiny_config(*overrides))
    model = cfg.model_config()
    splits = [build_split(cfg.data, s, model) for s in ("train", "valid")]
    values = sum(sum(len(s) for s in split.sequences) if hasattr(split, "sequences") else split.tokens.size
                 for split in splits)
    assert cfg.data.footprint(model)[0] == 12 * values


def test_a_large_data_set_is_checked_in_a_bounded_child_and_the_app_does_not_grow(tmp_path) -> None:
    # Past the arithmetic bound (raised here), clips=100 x 60 s is built by the check: in the child, whose
    # 64 MiB run out; built in this process it would take about 0.6 GB, as issue 14 measured.
    jobs = JobManager(tmp_path / "runs", limits=RunLimits(data_bytes=2**40, check_bytes=64 * MIB))
    before = rss_bytes()
    with pytest.raises(ConfigError, match="the data needs more than 64 MiB of memory to build"):
        jobs.check(tiny_config("data.clips=100", "data.seconds=60"), device="cpu")
    assert rss_bytes() - before < 30 * MIB
    assert not (tmp_path / "runs").exists()


def test_a_model_config_too_large_to_build_is_refused_in_the_child_and_the_app_does_not_grow(tmp_path) -> None:
    # 30,000 layers: counting them on the meta device takes about a gigabyte of module objects; the child has 64 MiB.
    jobs = JobManager(tmp_path / "runs", limits=RunLimits(check_bytes=64 * MIB))
    config = tiny_config()
    config["model"]["dilations"] = [1] * 30_000
    before = rss_bytes()
    with pytest.raises(ConfigError, match="the model config needs more than 64 MiB of memory to build"):
        jobs.check(config, device="cpu")
    assert rss_bytes() - before < 30 * MIB


def test_a_data_check_that_takes_too_long_is_refused(tmp_path) -> None:
    jobs = JobManager(tmp_path / "runs", limits=RunLimits(check_seconds=0.05))
    with pytest.raises(ConfigError, match="checking the model and the data took more than 0.05 s"):
        jobs.check(tiny_config(), device="cpu")


def test_the_childs_own_refusal_comes_back_with_its_reason(tmp_path) -> None:
    jobs = JobManager(tmp_path / "runs")
    assert jobs.check(tiny_config(), device="cpu").data.clips == 4
    with pytest.raises(ConfigError, match="train.batch_size=1000 x 1 process.*larger than the"):
        jobs.check(tiny_config("train.batch_size=1000"), device="cpu")


def test_resuming_past_the_step_bound_is_refused_naming_the_field(tmp_path) -> None:
    from core.checkpoints import save_checkpoint
    from core.models import build_model

    run = tmp_path / "runs" / "old"
    config = tiny_config("train.max_steps=2")
    cfg = train_config.from_dict(config)
    save_checkpoint(build_model(cfg.model_config()), run / "checkpoints" / "step_00000002")
    (run / "checkpoints" / "step_00000002" / "trainer_state.json").write_text('{"step": 2}')
    (run / "config.json").write_text(json.dumps(config))
    (run / "status.json").write_text(json.dumps({"state": "finished", "step": 2, "max_steps": 2}))
    jobs = JobManager(tmp_path / "runs")
    with pytest.raises(ConfigError, match="train.max_steps must be at most 1,000,000 on this server"):
        jobs.resume("old", max_steps=10**9)
    assert not (run / "job.json").exists()
