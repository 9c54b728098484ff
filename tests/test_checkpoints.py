"""Checkpoint folders: round trip, strict loading, clear errors, and atomic saves under kill -9."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.checkpoints import (
    CONFIG,
    WEIGHTS,
    latest_checkpoint,
    load_checkpoint,
    read_config,
    remove_stale_temporaries,
    save_checkpoint,
)
from core.conditioning import Cond
from core.errors import CheckpointError
from core.models.wavenet import WaveNet, WaveNetConfig

ROOT = Path(__file__).resolve().parents[1]


def tiny(seed=0, **kw) -> WaveNet:
    torch.manual_seed(seed)
    cfg = dict(quantization_levels=16, dilations=[1, 2, 4], residual_channels=8, dilation_channels=8,
               skip_channels=8, head_channels=8, n_classes=2, **kw)
    return WaveNet(WaveNetConfig(**cfg)).eval()


def test_save_then_load_gives_the_same_model_in_hub_layout(tmp_path):
    model = tiny()
    folder = save_checkpoint(model, tmp_path / "ckpt", metrics={"valid_bits_per_sample": 1.5})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["model_type"] == "wavenet"
    assert "valid_bits_per_sample" in (folder / "README.md").read_text()
    loaded = load_checkpoint(folder)
    x = torch.randint(0, 16, (2, 20))
    cond = Cond(classes=torch.tensor([0, 1]))
    with torch.no_grad():
        assert torch.equal(model(x, cond), loaded(x, cond))
    assert read_config(folder) == model.config


def test_existing_folder_is_not_overwritten_unless_asked(tmp_path):
    save_checkpoint(tiny(), tmp_path / "c")
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(tiny(1), tmp_path / "c")
    save_checkpoint(tiny(1), tmp_path / "c", overwrite=True)
    assert torch.equal(load_checkpoint(tmp_path / "c").input_conv.weight, tiny(1).input_conv.weight)


def _edit_weights(folder: Path, edit) -> None:
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("head.3.weight"), "missing tensor 'head.3.weight'"),
    (lambda s: s.__setitem__("extra.weight", torch.zeros(2)), "unexpected tensor 'extra.weight'"),
    (lambda s: s.__setitem__("head.3.bias", torch.zeros(5)), "tensor 'head.3.bias' has shape"),
])
def test_loading_is_strict_and_names_the_tensor(tmp_path, edit, message):
    folder = save_checkpoint(tiny(), tmp_path / "c")
    _edit_weights(folder, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_weights_that_do_not_match_the_config_are_an_error(tmp_path):
    folder = save_checkpoint(tiny(), tmp_path / "c")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["residual_channels"] = 16
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(folder)


@pytest.mark.parametrize("breakage, message", [
    (lambda f: (f / "config.json").unlink(), "no config.json"),
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda f: (f / "config.json").write_text('{"model_type": "gpt9"}'), "unknown model_type 'gpt9'"),
    (lambda f: (f / "config.json").write_text('{"model_type": "wavenet", "layers": 3}'), "unknown wavenet config"),
    (lambda f: (f / "config.json").write_text('{"model_type": "wavenet", "kernel_size": 1}'), "kernel_size"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\x80\x04pickle"), "not a readable safetensors"),
])
def test_a_broken_folder_gives_a_checkpoint_error_with_the_reason(tmp_path, breakage, message):
    folder = save_checkpoint(tiny(), tmp_path / "c")
    breakage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_a_path_that_is_not_a_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        load_checkpoint(tmp_path / "nowhere")


SAVER = """
import sys, torch
sys.path.insert(0, {root!r})
from core.checkpoints import save_checkpoint
from tests.test_checkpoints import tiny
models = [tiny(0), tiny(1)]
save_checkpoint(models[0], {folder!r}, overwrite=True)
print("ready", flush=True)
i = 1
while True:
    save_checkpoint(models[i % 2], {folder!r}, overwrite=True)
    i += 1
"""


def test_kill_during_save_leaves_the_old_or_the_new_checkpoint(tmp_path):
    folder = tmp_path / "c"
    candidates = [tiny(0).state_dict(), tiny(1).state_dict()]
    script = SAVER.format(root=str(ROOT), folder=str(folder))
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31, 0.43):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(folder).state_dict()
        assert any(all(torch.equal(state[k], c[k]) for k in c) for c in candidates)


def test_stale_temporaries_of_killed_saves_and_deletions_are_removed_and_checkpoints_kept(tmp_path):
    """Issue #14: saves killed before their rename left .step_*.tmp folders that nothing ever removed."""
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    save_checkpoint(tiny(0), ckpts / "step_00000010")
    save_checkpoint(tiny(1), ckpts / "step_00000020")
    (run / "latest").write_text("step_00000020")
    killed_save = Path(tempfile.mkdtemp(prefix=".step_00000030.", suffix=".tmp", dir=ckpts))  # as save_checkpoint
    (killed_save / WEIGHTS).write_bytes(b"half a file")
    killed_delete = ckpts / ".step_00000005.deleting"
    killed_delete.mkdir()
    (killed_delete / CONFIG).write_text("{}")
    replaced = ckpts / ".step_00000020.old"  # an overwrite killed after its second rename: the new one is in place
    save_checkpoint(tiny(2), replaced)
    pending = ckpts / ".step_00000040.old"  # killed between its renames: the old one is all there is
    save_checkpoint(tiny(3), pending)

    removed = remove_stale_temporaries(run)

    assert sorted(p.name for p in removed) == sorted([killed_save.name, killed_delete.name, replaced.name])
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000010", "step_00000020", "step_00000040"]
    assert latest_checkpoint(run) == ckpts / "step_00000020"
    for step, seed in (("step_00000010", 0), ("step_00000020", 1), ("step_00000040", 3)):
        state = load_checkpoint(ckpts / step).state_dict()
        assert all(torch.equal(state[k], v) for k, v in tiny(seed).state_dict().items())
    assert remove_stale_temporaries(run) == []
    assert remove_stale_temporaries(tmp_path / "no-run-yet") == []
