"""Every bundled checkpoint loads and evaluates, on its own training config's test split, to the NLL its card states.

The bundles were trained and carded before core/ was reshaped (issue #13); their configs are in the
old flat layout and migrate when read. A bundle whose card states no test NLL is only loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoints import load_checkpoint
from core.data.pianorolls import independent_bernoulli_ll, load_pianorolls, train_mean
from core.data.speech_frames import independent_gaussian_ll
from core.evaluate import evaluate_checkpoint, find_train_config
from core.training import config as train_config
from tests.conftest import SPEECH_CORPUS

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())


def card(bundle: Path) -> dict:
    return json.loads((bundle / "metrics.json").read_text())


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_a_bundle_loads_and_its_old_training_config_migrates(bundle):
    model = load_checkpoint(bundle)
    cfg = train_config.load(find_train_config(bundle))
    assert cfg.model["model_type"] == model.model_type and cfg.data.kind


def overrides_for_test_split(bundle: Path, request: pytest.FixtureRequest) -> list[str]:
    """Config overrides that point `bundle`'s training config at its test split: the speech corpus's, rendered
    here if this machine has none (the test split alone takes a minute); skips for other rendered audio absent."""
    root = getattr(train_config.load(find_train_config(bundle)).data, "root", "")
    if root == SPEECH_CORPUS:
        return [f"data.root={request.getfixturevalue('speech_corpus')}"]
    if root and not (ROOT / root).is_dir():
        pytest.skip(f"{bundle.name}'s test split is rendered audio ({root}); `make audio-model` makes it")
    return []


CARDED = [b for b in BUNDLES if "test_bits_per_dim" in card(b) and "test_fivo_per_t" not in card(b)]
SEQUENCE_MODELS = [b for b in BUNDLES if "test_fivo_per_t" in card(b)]


@pytest.mark.timeout(1800)  # the digit models score all 10,000 test digits: minutes on 2 cores
@pytest.mark.parametrize("bundle", CARDED, ids=[b.name for b in CARDED])
def test_a_bundle_evaluates_to_the_test_nll_on_its_card(bundle, request):
    report = evaluate_checkpoint(bundle, "test", overrides=overrides_for_test_split(bundle, request), batch_size=64)
    assert report["bits_per_dim"] == pytest.approx(card(bundle)["test_bits_per_dim"], abs=1e-4)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("bundle", SEQUENCE_MODELS, ids=[b.name for b in SEQUENCE_MODELS])
def test_a_sequence_bundle_evaluates_to_its_cards_bounds_and_beats_the_independent_floor(bundle, request):
    overrides = overrides_for_test_split(bundle, request)
    cfg = train_config.load(find_train_config(bundle), overrides)
    report = evaluate_checkpoint(bundle, "test", overrides=overrides)
    for bound in ("elbo", "iwae", "fivo"):
        assert report[f"{bound}_per_t"] == pytest.approx(card(bundle)[f"test_{bound}_per_t"], abs=0.02), bound
    if cfg.data.kind == "pianorolls":  # each key an independent Bernoulli at its training mean
        rolls = load_pianorolls(cfg.data.name)
        floor = independent_bernoulli_ll(rolls["test"], train_mean(rolls["train"]))
    elif cfg.data.kind == "speech_frames":  # each standardised sample an independent N(0, 1)
        floor = independent_gaussian_ll(cfg.data.build("test", load_checkpoint(bundle).config).sequences)
    else:
        return  # the GHMM's card sets its bounds beside the exact log p(x) instead
    assert min(report["elbo_per_t"], report["iwae_per_t"], report["fivo_per_t"]) > floor


def test_a_bundle_written_before_the_reshaping_restores_and_resumes_training(tmp_path):
    from core.train import main as train
    from scripts.bundle import restore

    run = restore(ROOT / "checkpoints" / "fourier-wavenet", tmp_path / "run")
    assert json.loads((run / "config.json").read_text())["data"]["kind"] == "fourier"  # the old flat section
    assert train(["--run-dir", str(run), "--resume", "--no-progress", "--set", "train.max_steps=4002",
                  "--set", "train.valid_every=2", "--set", "data.fourier_curves=16", "--set", "train.batch_size=4",
                  "--set", "train.valid_batches=1"]) == 0
    resumed = json.loads((run / "config.json").read_text())
    assert resumed["objective"] == {"name": "nll"} and "fourier_curves" in resumed["data"]
    assert (run / "checkpoints" / "step_00004002").is_dir()
