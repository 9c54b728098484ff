"""`python -m core.sample`: outputs start with the quantised primer, then the continuation; every input is tried."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from core.audio import read_audio
from core.checkpoints import save_checkpoint
from core.codecs import decode, encode
from core.models.wavenet import WaveNet, WaveNetConfig
from core.sample import main

ROOT = Path(__file__).resolve().parents[1]


def audio_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    cfg = WaveNetConfig(quantization_levels=256, dilations=[1, 2, 4, 8], residual_channels=8, dilation_channels=8,
                        skip_channels=8, head_channels=8, sample_rate=8000)
    return save_checkpoint(WaveNet(cfg), folder)


def test_each_output_starts_with_its_inputs_conditioning_fragment(tmp_path):
    ckpt = audio_checkpoint(tmp_path / "ckpt")
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 16000)  # resampled to 8 kHz
    sf.write(tmp_path / "b.flac", 0.3 * np.sin(2 * np.pi * 220 * t[:8000]), 8000)
    out = tmp_path / "out"
    code = main(["--checkpoint", str(ckpt), "--temperature", "0.9", "--seconds", "0.25", "--prime-seconds", "0.5",
                 "--out", str(out), "--seed", "1", "--no-progress", "--no-match-level",
                 str(tmp_path / "a.wav"), str(tmp_path / "b.flac")])
    assert code == 0
    for name, source in (("a", "a.wav"), ("b", "b.flac")):
        audio, sr = sf.read(out / f"{name}_continued.wav", dtype="float32")
        assert sr == 8000 and len(audio) == 4000 + 2000  # 0.5 s primer + 0.25 s continuation
        primer = read_audio(tmp_path / source, 8000)[-4000:]
        expected = decode(encode(primer, 256, "mulaw"), 256, "mulaw")
        assert np.abs(audio[:4000] - expected).max() <= 1 / 32767 + 1e-6
        assert np.abs(audio[4000:]).max() > 0


def test_without_inputs_it_writes_unconditional_samples_reproducibly(tmp_path):
    ckpt = audio_checkpoint(tmp_path / "ckpt")
    for out in ("o1", "o2"):
        assert main(["--checkpoint", str(ckpt), "--seconds", "0.1", "--count", "2", "--seed", "3",
                     "--out", str(tmp_path / out), "--no-progress"]) == 0
    for name in ("sample_000.wav", "sample_001.wav"):
        a, _ = sf.read(tmp_path / "o1" / name)
        b, _ = sf.read(tmp_path / "o2" / name)
        assert len(a) == 800 and np.array_equal(a, b)
    a0, _ = sf.read(tmp_path / "o1" / "sample_000.wav")
    a1, _ = sf.read(tmp_path / "o1" / "sample_001.wav")
    assert not np.array_equal(a0, a1)


def test_bad_input_file_and_bad_checkpoint_exit_2_with_a_message(tmp_path):
    ckpt = audio_checkpoint(tmp_path / "ckpt")
    (tmp_path / "notes.wav").write_text("not audio at all")
    for args, message in (
        (["--checkpoint", str(ckpt), str(tmp_path / "notes.wav")], "could not read"),
        (["--checkpoint", str(tmp_path / "missing")], "not a folder"),
    ):
        result = subprocess.run([sys.executable, "-m", "core.sample", "--no-progress", "--out", str(tmp_path / "o"),
                                 *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        assert message in result.stderr


def test_every_input_is_tried_each_failure_reported_and_the_exit_status_is_2(tmp_path, capsys):
    ckpt = audio_checkpoint(tmp_path / "ckpt")
    t = np.arange(4000) / 8000
    for name in ("a", "c"):
        sf.write(tmp_path / f"{name}.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000)
    (tmp_path / "bad.wav").write_text("not audio at all")
    out = tmp_path / "out"
    code = main(["--checkpoint", str(ckpt), "--seconds", "0.05", "--out", str(out), "--no-progress",
                 *(str(tmp_path / f"{name}.wav") for name in ("a", "bad", "missing", "c"))])
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["a_continued.wav", "c_continued.wav"]
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'bad.wav'}: could not read" in err
    assert f"error: {tmp_path / 'missing.wav'}: no audio file at" in err
    assert "2 of 4 failed" in err


def test_clips_ending_in_a_second_of_silence_get_continuations_that_depend_on_them(tmp_path):
    """Issue #14: the bundled model, two tones each followed by 1 s of silence, one seed. The primers (the last
    second of each tone) have the same peak, so level matching raises both alike and only what the model heard
    can make the continuations differ."""
    t = np.arange(16000) / 8000
    continuations = []
    for freq in (262, 392):
        sound = np.sin(2 * np.pi * freq * t)
        clip = np.concatenate([0.5 * sound / np.abs(sound[-8000:]).max(), np.zeros(8000)])
        sf.write(tmp_path / f"{freq}.wav", clip, 8000, subtype="FLOAT")
        assert main(["--checkpoint", str(ROOT / "checkpoints" / "melodies-wavenet"), "--seconds", "0.25", "--seed", "0",
                     "--out", str(tmp_path / "out"), "--no-progress", str(tmp_path / f"{freq}.wav")]) == 0
        audio, _ = sf.read(tmp_path / "out" / f"{freq}_continued.wav", dtype="int16")
        continuations.append(audio[8000:])
    assert len(continuations[0]) == 2000
    assert not np.array_equal(*continuations)
