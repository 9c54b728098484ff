"""Speech frames (core/data/speech_frames.py): exact framing and standardisation on synthetic signals, training
statistics over every sample, the other splits standardised with them, and the inverse."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.sequences import Collate
from core.data.speech_frames import (
    frame_signal,
    independent_gaussian_ll,
    signal_stats,
    speech_frame_splits,
    speech_frames_from_folder,
    unframe,
)
from core.errors import ConfigError


def test_framing_standardises_then_zero_pads_the_last_frame_exactly():
    signal = np.arange(450, dtype=np.float64)
    frames = frame_signal(signal, mean=10.0, std=4.0)
    assert frames.shape == (3, 200) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames[0], ((np.arange(200) - 10.0) / 4.0).astype(np.float32))
    np.testing.assert_array_equal(frames[2, :50], ((np.arange(400, 450) - 10.0) / 4.0).astype(np.float32))
    assert not frames[2, 50:].any()
    assert frame_signal(np.ones(400), 0.0, 1.0).shape == (2, 200)


def test_statistics_are_over_every_training_sample_not_per_signal():
    a, b = np.full(100, 1.0), np.full(300, 5.0)
    mean, std = signal_stats([a, b])
    assert mean == pytest.approx(4.0) and std == pytest.approx(np.sqrt(0.25 * 9 + 0.75 * 1))


def test_every_split_is_standardised_with_the_training_statistics():
    rng = np.random.default_rng(0)
    train = [rng.normal(3.0, 2.0, 1000), rng.normal(3.0, 2.0, 333)]
    valid = [rng.normal(0.0, 1.0, 250)]
    data, mean, std = speech_frame_splits({"train": train, "valid": valid}, samples_per_step=100)
    assert (mean, std) == signal_stats(train)
    assert [len(data["train"][i]) for i in range(2)] == [10, 4] and len(data["valid"][0]) == 3
    np.testing.assert_allclose(data["valid"][0].numpy().ravel()[:250], (valid[0] - mean) / std, rtol=1e-6)


def test_unframe_inverts_frame_signal_on_the_signals_samples():
    signal = np.random.default_rng(1).normal(0.0, 500.0, 1234)
    frames = frame_signal(signal, 3.0, 500.0)
    np.testing.assert_allclose(unframe(frames, 3.0, 500.0)[:1234], signal, rtol=1e-5, atol=1e-3)


def test_speech_batches_shift_inputs_without_centring():
    data, _, _ = speech_frame_splits({"train": [np.sin(np.arange(700.0)), np.cos(np.arange(300.0))]})
    batch = Collate()([data["train"][0], data["train"][1]])
    assert batch.lengths.tolist() == [4, 2] and batch.targets.shape == (2, 4, 200)
    assert not batch.inputs[:, 0].any()
    np.testing.assert_array_equal(batch.inputs[0, 1:].numpy(), batch.targets[0, :3].numpy())


@pytest.mark.parametrize("bad", [[], [np.zeros((2, 3))], [np.array([1.0, np.nan])], [np.array([])]])
def test_unusable_signals_raise_config_error(bad):
    with pytest.raises(ConfigError):
        signal_stats(bad)


def test_an_audio_folder_is_framed_with_its_training_statistics(tmp_path):
    from core.audio import write_wav

    rng = np.random.default_rng(2)
    clips = {"train": [rng.uniform(-0.5, 0.5, 1000), rng.uniform(-0.2, 0.6, 500)], "test": [rng.uniform(-1, 1, 300)]}
    for split, signals in clips.items():
        (tmp_path / split).mkdir()
        for i, signal in enumerate(signals):
            write_wav(tmp_path / split / f"{i}.wav", signal.astype(np.float32), 16000)
    data, mean, std = speech_frames_from_folder(tmp_path)
    assert sorted(data) == ["test", "train"] and [len(data["train"][i]) for i in range(2)] == [5, 3]
    expected = np.concatenate(clips["train"])
    assert mean == pytest.approx(expected.mean(), abs=1e-3) and std == pytest.approx(expected.std(), rel=1e-3)
    np.testing.assert_allclose(data["test"][0].numpy().ravel()[:300], (clips["test"][0] - mean) / std, atol=1e-3)


def test_training_statistics_are_read_once_then_remembered_until_the_files_change(tmp_path, monkeypatch):
    import os

    import soundfile as sf

    from core.data import speech_frames
    from core.data.speech_frames import training_stats

    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "cache"))
    (tmp_path / "train").mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        sf.write(tmp_path / "train" / f"{i}.wav", rng.uniform(-0.5, 0.5, 1600), 16000, subtype="FLOAT")
    first = training_stats(tmp_path)
    read = []
    monkeypatch.setattr(speech_frames, "audio_folder_split", lambda *a: read.append(a) or [np.ones(3), np.zeros(3)])
    assert training_stats(tmp_path) == pytest.approx(first) and read == []  # from the cache: no audio read
    os.utime(tmp_path / "train" / "1.wav", ns=(1, 1))  # a changed file: read again
    assert training_stats(tmp_path) == (0.5, 0.5) and len(read) == 1


def test_the_independent_gaussian_floor_is_the_standard_normal_log_density_per_frame():
    zeros = [np.zeros((3, 200), np.float32), np.zeros((1, 200), np.float32)]
    assert independent_gaussian_ll(zeros) == pytest.approx(-100 * np.log(2 * np.pi))
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((500, 200)) for _ in range(4)]  # E[-x^2/2] = -1/2 per value
    assert independent_gaussian_ll(frames) == pytest.approx(-100 * np.log(2 * np.pi * np.e), rel=2e-3)
    scaled = independent_gaussian_ll([2 * f for f in frames])
    assert scaled < independent_gaussian_ll(frames), "frames wider than the training deviation score lower"
