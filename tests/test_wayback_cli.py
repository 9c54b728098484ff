"""The wayback family through the shared CLIs: the seed's train command, core.evaluate and core.sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from gradio_client import Client, handle_file

from core import evaluate, sample
from core.checkpoints import save_checkpoint
from core.model_store import ModelStore
from core.models import build_model, config_from_dict
from core.train import main as train
from pages import audio_models as audio_models_page
from tests.conftest import serving

TINY = ("{sampling_frequency: 8000, bit_depth: 6, data_dim: 64, initial_learning_rate: 0.01, decay_rate: 0.5, "
        "decay_patience: 100, clip_norm: 1, layout: wayback, cell: gru, activation: tanh, use_bn: False, "
        "vskip: False, batch_size: 2, chunk_size: 2, layer_sizes: [8, 8], periods: [1, 2], boundaries: [4, 2], "
        "io_sizes: [8], weight_decay: 0}")


def audio_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("valid", 2), ("test", 2)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            t = np.arange(2400) / 8000
            sf.write(root / split / f"{i}.wav", 0.5 * np.sin(2 * np.pi * rng.uniform(200, 600) * t), 8000)
    return root


def test_the_seeds_train_command_trains_resumes_evaluates_and_samples_with_only_the_script_name_changed(tmp_path):
    data = audio_folder(tmp_path / "data")
    command = ["--data_dir", str(data), "--base_output_dir", str(tmp_path / "runs"), "--basename", "wb",
               "--resume", "false", "--max_step_count", "3", "--validation_interval", "3", "--hyperparameters", TINY]
    assert train(command) == 0
    run = tmp_path / "runs" / "wb"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["layout"] == "wayback" and config["objective"] == {"name": "tbptt", "checkpointed": None}
    assert config["data"] == {"kind": "audio_folder", "root": str(data), "targets": 1024, "max_files": None, "seed": 0,
                              "max_silence": 0.0, "classes": ""}
    resumed = [a if a != "false" else "true" for a in command]
    resumed[resumed.index("--max_step_count") + 1] = "6"
    assert train(resumed) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6 and (run / "checkpoints" / "step_00000006").is_dir()
    report = evaluate.evaluate_checkpoint(run / "checkpoints" / "step_00000006", "test")
    assert report["bits_per_dim"] > 0 and report["dims_per_item"] > 0
    out = tmp_path / "samples"
    assert sample.main(["--checkpoint", str(run / "checkpoints" / "step_00000006"), "--seconds", "0.05",
                        "--out", str(out), "--no-progress", str(data / "test" / "0.wav")]) == 0
    written, rate = sf.read(out / "0_continued.wav")
    assert rate == 8000 and len(written) == 2400 + 400  # the primer as heard, then 0.05 s of continuation


def test_the_audio_page_lists_and_continues_a_wayback_checkpoint(tmp_path):
    torch.manual_seed(0)
    models = tmp_path / "models"
    model = build_model(config_from_dict({"model_type": "wayback", "sampling_frequency": 8000, "bit_depth": 6,
                                          "layout": "stack", "cell": "gru", "layer_sizes": [8, 8],
                                          "boundaries": [4, 4], "chunk_size": 2, "io_sizes": [8]}))
    save_checkpoint(model, models / "rnn")
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.5 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000), 8000)
    with serving(models) as url:
        client = Client(url, verbose=False)
        result = client.predict(model=str(models / "rnn"), audio=handle_file(str(clip)), prime_seconds=0.1,
                                seconds=0.1, temperature=1.0, top_k=0, variations=1, seed=0, class_id=0,
                                match_level=False, api_name="/generate_audio")
    data, rate = sf.read(result[1], dtype="int16")
    assert rate == 8000 and len(data) == 800 + 800  # the primer as heard, then the continuation
    assert "recurrent" in audio_models_page.model_summary(audio_models_page.audio_models(ModelStore([models]))[0])
