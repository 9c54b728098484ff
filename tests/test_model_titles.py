"""Models are listed by what they are: a model card's title, else one made from the family, data and rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoints import card_title, model_card, save_checkpoint
from core.model_store import ModelStore, model_title
from tests.conftest import tiny_audio_config
from tests.test_digits import tiny_digit_wavenet

ROOT = Path(__file__).resolve().parents[1]


def test_a_card_title_is_written_in_the_front_matter_and_read_back(tmp_path: Path) -> None:
    from core.models.wavenet import WaveNet

    model = WaveNet(tiny_audio_config())
    card = model_card(model, title="Bach melodies, 8 kHz")
    assert card.startswith("---\nlibrary_name: autoregressive-studio\n")
    assert '\ntitle: "Bach melodies, 8 kHz"\n---\n' in card
    assert "\n# Bach melodies, 8 kHz\n" in card
    save_checkpoint(model, tmp_path / "titled", card=card)
    save_checkpoint(model, tmp_path / "plain")
    assert card_title(tmp_path / "titled") == "Bach melodies, 8 kHz"
    assert card_title(tmp_path / "plain") is None and card_title(tmp_path / "missing") is None
    (tmp_path / "plain" / "README.md").write_text("# notes\ntitle: not front matter\n")
    assert card_title(tmp_path / "plain") is None
    with pytest.raises(ValueError, match="one line"):
        model_card(model, title="two\nlines")


def test_a_model_without_a_card_title_is_named_by_family_data_and_rate(tmp_path: Path) -> None:
    from core.models.wavenet import WaveNet

    audio = WaveNet(tiny_audio_config())
    assert model_title(audio) == "WaveNet on audio, 8 kHz"
    assert model_title(audio, {"kind": "audio_folder", "root": "data/melodies8k"}) == \
        "WaveNet on audio from data/melodies8k, 8 kHz"
    assert model_title(tiny_digit_wavenet(4), {"kind": "mnist"}) == "WaveNet on MNIST digits"
    assert model_title(tiny_digit_wavenet(4)) == "WaveNet"
    run = tmp_path / "runs" / "digits"
    save_checkpoint(tiny_digit_wavenet(4), run / "checkpoints" / "step_00000002")
    (run / "latest").write_text("step_00000002")
    (run / "config.json").write_text(json.dumps({"data": {"kind": "mnist"}}))
    [entry] = ModelStore([tmp_path / "runs"], device="cpu").list_models()
    assert (entry["title"], entry["name"]) == ("WaveNet on MNIST digits", "runs/digits (step_00000002)")
    assert entry["label"] == "WaveNet on MNIST digits · runs/digits (step_00000002)"


def test_every_bundled_model_has_a_title_of_its_own() -> None:
    entries = ModelStore([ROOT / "checkpoints"], device="cpu").list_models()
    titles = {e["name"]: e["title"] for e in entries}
    assert titles["checkpoints/melodies-wavenet"] == "Bach melodies, 8 kHz"
    assert len(set(titles.values())) == len(titles)
