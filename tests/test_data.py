import itertools

import numpy as np
import pytest
import soundfile as sf
import torch

from core.codecs import decode, encode
from core.data import DATA_KINDS, Batch, build_split, data_config, data_config_from_dict, data_config_to_dict
from core.data.audio_folder import AudioFolderData, audio_folder_split, shorten_silences
from core.data.tones import KINDS, tone_clip, tones
from core.data.windows import ClassedWindows, WindowDataset, audio_windows
from core.errors import AudioError, ConfigError
from core.models.wavenet import WaveNetConfig
from core.pitch import PITCH_CLASSES

SR = 8000


def small_wavenet(**kw) -> WaveNetConfig:
    return WaveNetConfig(quantization_levels=64, dilations=[1, 2, 4], residual_channels=8, dilation_channels=8,
                         skip_channels=8, head_channels=8, sample_rate=SR, **kw)


# -- tones ----------------------------------------------------------------------------


def test_tones_are_deterministic_per_seed():
    a, b = tones(3, 6, SR, 0.25), tones(3, 6, SR, 0.25)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_tones_differ_across_seeds():
    a, b = tones(0, 6, SR, 0.25), tones(1, 6, SR, 0.25)
    assert not any(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_longer_tone_list_extends_shorter_one():
    a, b = tones(5, 3, SR, 0.1), tones(5, 7, SR, 0.1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b[:3], strict=True))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("frequency", [None, 3900.0])
def test_tone_clips_are_finite_float32_with_peak_in_range(kind, frequency):
    for seed in range(5):
        x = tone_clip(np.random.default_rng(seed), SR, 0.3, kind, frequency)
        assert x.dtype == np.float32 and x.shape == (round(0.3 * SR),)
        assert np.isfinite(x).all()
        assert 0.3 - 1e-6 <= np.abs(x).max() <= 0.9 + 1e-6


def spectral_peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sample_rate)[spectrum.argmax()])


@pytest.mark.parametrize("f", [500.0, 123.4, 1000.0])
def test_sine_of_frequency_f_has_spectral_peak_within_2hz_of_f(f):
    x = tone_clip(np.random.default_rng(0), SR, 2.0, "sine", f)
    assert abs(spectral_peak_hz(x, SR) - f) <= 2.0


def test_chord_is_rooted_on_the_given_frequency():
    x = tone_clip(np.random.default_rng(1), SR, 2.0, "chord", 220.0)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    assert abs(freqs[spectrum[freqs < 250].argmax()] - 220.0) <= 2.0  # the lowest note is the root
    assert spectrum[freqs < 200].max() < 0.05 * spectrum.max()  # nothing below it


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sample_rate": 100}, "sample_rate"),
        ({"seconds": 0.0}, "seconds"),
        ({"frequency": 4000.0}, "frequency"),
        ({"kind": "square"}, "kind"),
    ],
)
def test_tone_clip_rejects_bad_arguments_naming_them(kwargs, name):
    args = {"sample_rate": SR, "seconds": 0.1, "kind": "sine", **kwargs}
    with pytest.raises(ConfigError, match=name):
        tone_clip(np.random.default_rng(0), **args)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"seed": -1}, "seed"), ({"n_clips": 0}, "n_clips"), ({"kinds": ["saw"]}, "kinds")]
)
def test_tones_rejects_bad_arguments_naming_them(kwargs, name):
    args = {"seed": 0, "n_clips": 2, "sample_rate": SR, "seconds": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=name):
        tones(**args)


# -- windows --------------------------------------------------------------------------

R, T = 5, 8


def ramps(*lengths: int) -> list[np.ndarray]:
    """Sequences whose values are distinct everywhere, so a window's content says where it came from."""
    return [1000 * i + np.arange(n, dtype=np.int64) for i, n in enumerate(lengths)]


def test_every_window_has_length_r_plus_t_and_is_a_long_tensor():
    ds = WindowDataset(ramps(40, 13, 77), R, T)
    assert len(ds) > 0
    for i in range(len(ds)):
        w = ds[i]
        assert w.dtype == torch.int64 and w.shape == (R + T,)


def test_consecutive_windows_of_a_sequence_overlap_by_exactly_r_samples():
    ds = WindowDataset(ramps(100), R, T, random_offset=False)
    windows = [ds[i].numpy() for i in range(len(ds))]
    assert len(windows) == (100 - R) // T
    for a, b in itertools.pairwise(windows):
        assert np.array_equal(a[T:], b[:R])  # the last R of one window are the first R of the next
        assert b[0] - a[0] == T  # stride T


def test_windows_score_every_target_once_per_epoch():
    ds = WindowDataset(ramps(60, 45), R, T, seed=3)
    for epoch in range(4):
        ds.set_epoch(epoch)
        scored = np.concatenate([ds[i].numpy()[R:] for i in range(len(ds))])
        assert len(np.unique(scored)) == len(scored)


def test_random_offsets_over_epochs_cover_every_position_after_the_receptive_field():
    ds = WindowDataset(ramps(60), R, T, seed=0)
    scored = set()
    for epoch in range(50):
        ds.set_epoch(epoch)
        scored |= {int(v) for i in range(len(ds)) for v in ds[i][R:]}
    assert scored == set(range(R, 60))


def test_random_offsets_differ_between_epochs_and_are_reproducible():
    seqs = ramps(*[R + 3 * T + T - 1] * 8)  # slack T - 1: any offset in [0, T) is possible
    ds = WindowDataset(seqs, R, T, seed=7)
    by_epoch = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        by_epoch.append(ds.offsets)
    assert len(set(by_epoch)) == 3
    assert all(0 <= o < T for offsets in by_epoch for o in offsets)
    ds.set_epoch(1)
    assert ds.offsets == by_epoch[1]
    again = WindowDataset(seqs, R, T, seed=7)
    again.set_epoch(1)
    assert [again[i].tolist() for i in range(len(again))] == [ds[i].tolist() for i in range(len(ds))]
    assert len(ds) == 3 * len(seqs)  # three windows per sequence, at any offset
    first = tuple(int(ds[3 * j][0]) % 1000 for j in range(len(seqs)))
    assert first == ds.offsets  # the first window of each sequence starts at its offset


def test_window_count_is_the_same_every_epoch():
    ds = WindowDataset(ramps(30, 47, 64, 100), R, T, seed=1)
    counts = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        counts.add(len(ds))
    assert counts == {(30 - R) // T + (47 - R) // T + (64 - R) // T + (100 - R) // T}


def test_validation_offsets_are_zero():
    ds = WindowDataset(ramps(50, 70), R, T, seed=4, random_offset=False)
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert ds.offsets == (0, 0)
        assert ds[0][0] == 0


def test_sequences_shorter_than_a_window_give_no_windows():
    ds = WindowDataset(ramps(R + T - 1, R + T), R, T, random_offset=False)
    assert len(ds) == 1 and ds[0][0] == 1000


def test_too_short_sequences_raise_config_error_saying_what_to_change():
    with pytest.raises(ConfigError) as e:
        WindowDataset(ramps(7, 10), R, T)
    msg = str(e.value)
    assert "7 to 10 samples" in msg and f"R + T = {R} + {T} = {R + T}" in msg
    assert "targets" in msg and "longer clips" in msg and "receptive field" in msg


def test_window_index_out_of_range_raises_index_error():
    ds = WindowDataset(ramps(40), R, T)
    with pytest.raises(IndexError):
        ds[len(ds)]


# -- audio folder ---------------------------------------------------------------------


def write_folder(root, splits=("train", "valid", "test"), n=2, seconds=0.1):
    for split in splits:
        (root / split).mkdir(parents=True)
        for i in range(n):
            x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * SR)) / SR)
            sf.write(root / split / f"{i:02d}.wav", x, SR, subtype="PCM_16")
    return root


def test_audio_folder_reads_the_split_sorted_as_float32_mono(tmp_path):
    root = write_folder(tmp_path, n=3)
    sf.write(root / "train" / "10.wav", np.full((400, 2), 0.25), SR, subtype="PCM_16")  # stereo, sorts last
    (root / "train" / "notes.txt").write_text("not audio")
    clips = audio_folder_split(root, "train", SR)
    assert len(clips) == 4
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in clips)
    assert clips[-1].shape == (400,) and np.allclose(clips[-1], 0.25, atol=1e-4)
    assert len(audio_folder_split(root, "train", SR, max_files=2)) == 2


def test_audio_folder_resamples_to_the_requested_rate(tmp_path):
    root = write_folder(tmp_path, splits=("valid",), n=1, seconds=0.5)
    (clip,) = audio_folder_split(root, "valid", 4000)
    assert abs(len(clip) - 2000) <= 1


def test_audio_folder_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere.*root/\{train,valid,test\}/\*\.wav"):
        audio_folder_split(tmp_path / "nowhere", "train", SR)


def test_audio_folder_missing_split_names_path_and_layout(tmp_path):
    root = write_folder(tmp_path, splits=("train",))
    with pytest.raises(ConfigError, match=r"valid.*root/\{train,valid,test\}/\*\.wav"):
        audio_folder_split(root, "valid", SR)


def test_audio_folder_empty_split_names_path_and_layout(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "readme.txt").write_text("no audio here")
    with pytest.raises(ConfigError, match=r"no audio files.*test.*root/\{train,valid,test\}/\*\.wav"):
        audio_folder_split(tmp_path, "test", SR)


def test_audio_folder_bad_file_raises_audio_error_naming_it(tmp_path):
    root = write_folder(tmp_path, splits=("train",))
    (root / "train" / "01_broken.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioError, match=r"01_broken\.wav"):
        audio_folder_split(root, "train", SR)


def test_silences_longer_than_the_limit_are_cut_to_it_keeping_their_edges_and_short_ones_stay():
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    gap, pause = np.zeros(SR, np.float32), np.zeros(SR // 40, np.float32)  # 1 s, and 25 ms
    x = np.concatenate([tone, gap, tone, pause, tone])
    y = shorten_silences(x, SR, 0.05)
    assert len(y) == len(x) - SR + SR // 20  # the second of silence is 50 ms now; the 25 ms pause stays
    np.testing.assert_array_equal(y[:SR + SR // 40], x[:SR + SR // 40])  # the fade out: its first 25 ms kept
    np.testing.assert_array_equal(y[-(2 * SR + SR // 40 + SR // 40):], x[-(2 * SR + SR // 40 + SR // 40):])
    np.testing.assert_array_equal(shorten_silences(tone, SR, 0.05), tone)
    assert len(shorten_silences(np.zeros(3, np.float32), SR, 0.05)) == 3  # under one frame: as it is


def test_an_audio_folder_with_max_silence_trains_on_its_files_with_long_silences_cut(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / split).mkdir()
        tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR // 2) / SR)
        sf.write(tmp_path / split / "a.wav", np.concatenate([tone, np.zeros(SR), tone]), SR, subtype="PCM_16")
    model = WaveNetConfig(dilations=[1, 2], sample_rate=SR, codec="mulaw")
    whole = AudioFolderData(root=str(tmp_path), targets=100).build("valid", model)
    cut = AudioFolderData(root=str(tmp_path), targets=100, max_silence=0.1).build("valid", model)
    rf = model.receptive_field  # a window is R context samples and 100 targets
    assert len(whole) == (2 * SR - rf) // 100 and len(cut) == (SR + SR // 10 - rf) // 100
    with pytest.raises(ConfigError, match="max_silence"):
        AudioFolderData(root=str(tmp_path), max_silence=-1.0)


# -- data kinds and build_split -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kind": "cifar"}, "kind"),
        ({"kind": "audio_folder"}, "root"),
        ({"targets": 0}, "targets"),
        ({"clips": 0}, "clips"),
        ({"seconds": -1.0}, "seconds"),
        ({"frequency": 0.0}, "frequency"),
        ({"kinds": []}, "kinds"),
        ({"kinds": ["sine", "noise"]}, "kinds"),
        ({"kind": "audio_folder", "root": "x", "max_files": 0}, "max_files"),
        ({"name": "jsb"}, "unknown tones data keys: name"),
        ({"seed": -2}, "seed"),
    ],
)
def test_data_config_rejects_bad_fields_naming_them(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        data_config(**kwargs)


def test_build_split_tones_gives_token_windows_for_the_model():
    model = small_wavenet()
    data = data_config(targets=64, clips=8, seconds=0.1)
    train, valid = build_split(data, "train", model), build_split(data, "valid", model)
    window = model.receptive_field + 64
    per_clip = (round(0.1 * SR) - model.receptive_field) // 64
    assert len(train) == 8 * per_clip and len(valid) == 4 * per_clip
    batch = torch.stack([train[i] for i in range(len(train))])
    assert batch.shape == (len(train), window)
    assert batch.min() >= 0 and batch.max() < 64
    assert valid.offsets == (0,) * 4
    assert not torch.equal(train[0], valid[0])  # splits hold different clips


def test_build_split_tokens_decode_to_the_configured_tone():
    model = small_wavenet(codec="linear")
    data = data_config(targets=32, clips=3, seconds=0.5, kinds=["sine"], frequency=500.0)
    ds = build_split(data, "test", model)
    assert len(ds.sequences) == 4
    for seq in ds.sequences:
        assert seq.dtype == np.int64 and len(seq) == round(0.5 * SR)
        assert abs(spectral_peak_hz(decode(seq, 64, "linear"), SR) - 500.0) <= 2.0


def test_build_split_splits_and_seeds_give_different_tones():
    model = small_wavenet()
    signals = {
        (seed, split): build_split(data_config(targets=32, clips=4, seconds=0.05, seed=seed), split, model)
        .sequences[0]
        for seed in (0, 1)
        for split in ("train", "valid", "test")
    }
    keys = list(signals)
    assert all(not np.array_equal(signals[a], signals[b]) for i, a in enumerate(keys) for b in keys[i + 1 :])


def test_build_split_audio_folder_reads_and_encodes_the_split(tmp_path):
    root = write_folder(tmp_path, n=2, seconds=0.1)
    model = small_wavenet()
    ds = build_split(data_config("audio_folder", root=str(root), targets=50), "valid", model)
    clip = audio_folder_split(root, "valid", SR)[0]
    assert np.array_equal(ds.sequences[0], encode(clip, 64, "mulaw"))
    assert len(ds) == 2 * ((800 - model.receptive_field) // 50) and ds[0].shape == (model.receptive_field + 50,)


def test_build_split_rejects_unknown_split():
    with pytest.raises(ConfigError, match="split"):
        build_split(data_config(), "dev", small_wavenet())


def test_build_split_rejects_codec_none_for_audio_data():
    with pytest.raises(ConfigError, match="codec"):
        build_split(data_config(clips=1, seconds=0.05), "train", small_wavenet(codec="none"))


def test_build_split_with_clips_too_short_for_targets_says_what_to_change():
    with pytest.raises(ConfigError, match=r"smaller `targets`"):
        build_split(data_config(clips=2, seconds=0.01, targets=1024), "train", small_wavenet())


def test_an_old_flat_data_section_keeps_only_its_kinds_keys():
    flat = {"kind": "mnist", "root": "", "targets": 1024, "clips": 64, "seconds": 2.0, "frequency": None,
            "kinds": ["sine"], "max_files": None, "seed": 0, "levels": 16, "mnist_path": "d.npz",
            "fourier_curves": 2048, "fourier_length": 500, "fourier_terms": [3, 5], "max_items": 3}
    data = data_config_from_dict(flat)
    assert data_config_to_dict(data) == {"kind": "mnist", "levels": 16, "mnist_path": "d.npz", "max_items": 3}
    older = {"kind": "tones", "root": "", "targets": 2048, "clips": 256, "max_files": None, "seed": 0}
    assert data_config_to_dict(data_config_from_dict(older))["clips"] == 256  # tones-wavenet's bundle
    with pytest.raises(ConfigError, match="unknown mnist data keys: name"):
        data_config_from_dict({"kind": "mnist", "name": "jsb"})


def test_every_kind_registers_a_config_that_round_trips_through_its_dict():
    for kind in DATA_KINDS:
        settings = {"root": "r"} if kind in ("audio_folder", "speech_frames") else {}
        data = data_config(kind, **settings)
        assert data.kind == kind and data_config_from_dict(data_config_to_dict(data)) == data


def test_a_windows_split_collates_into_a_batch_scored_from_the_receptive_field():
    model = small_wavenet()
    train = build_split(data_config(targets=16, clips=4, seconds=0.05), "train", model)
    batch = next(iter(train.loader(3, seed=1)))
    assert isinstance(batch, Batch) and batch.x.shape == (3, model.receptive_field + 16)
    assert batch.score_from == model.receptive_field and batch.cond is None and batch.lengths is None
    again = next(iter(train.loader(3, seed=1)))
    other_epoch = next(iter(train.loader(3, seed=1, epoch=1)))
    assert torch.equal(batch.x, again.x) and not torch.equal(batch.x, other_epoch.x)
    everything = list(train.loader(3, train=False))
    assert sum(b.x.shape[0] for b in everything) == len(train)  # evaluation sees every window, the last batch short


def test_a_pitch_classed_audio_folder_gives_each_window_its_files_register(tmp_path):
    t = np.arange(SR // 2) / SR
    voices = {"low": 85.0, "high": 250.0}  # pulse trains: registers 0 and the top one
    for split in ("train", "valid", "test"):
        (tmp_path / split).mkdir()
        for name, f0 in voices.items():
            x = 0.3 * np.cos(2 * np.pi * f0 * np.outer(t, np.arange(1, int(3500 / f0) + 1))).mean(axis=1)
            sf.write(tmp_path / split / f"{name}.wav", x, SR, subtype="PCM_16")
    model = small_wavenet(n_classes=PITCH_CLASSES, classes_from="pitch")
    split = AudioFolderData(root=str(tmp_path), targets=500, classes="pitch").build("train", model)
    assert isinstance(split, ClassedWindows) and split.classes == [PITCH_CLASSES - 1, 0]  # high.wav sorts first
    batch = split.collate([split[i] for i in range(len(split))])
    assert batch.x.shape == (len(split), model.receptive_field + 500)
    assert batch.cond.classes.tolist() == [split.classes[split.sequence_of(i)] for i in range(len(split))]
    assert set(batch.cond.classes.tolist()) == {0, PITCH_CLASSES - 1}
    with pytest.raises(ConfigError, match="data.classes and model.classes_from alike"):
        AudioFolderData(root=str(tmp_path), targets=500).build("train", model)
    with pytest.raises(ConfigError, match="data.classes and model.classes_from alike"):
        AudioFolderData(root=str(tmp_path), targets=500, classes="pitch").build("train", small_wavenet())
    with pytest.raises(ConfigError, match="classes must be one of"):
        AudioFolderData(root=str(tmp_path), classes="speaker")


def test_classed_windows_need_one_class_id_per_sequence_and_class_conditional_models_need_classed_data():
    with pytest.raises(ConfigError, match="one id per sequence"):
        ClassedWindows(ramps(50, 60), [0], receptive_field=4, targets=10)
    with pytest.raises(ConfigError, match="class id"):
        ClassedWindows(ramps(50), [-1], receptive_field=4, targets=10)
    x = [np.zeros(SR // 4, np.float32)]
    with pytest.raises(ConfigError, match="gives no class ids"):
        audio_windows(x, "train", small_wavenet(n_classes=3), targets=100, seed=0)
    with pytest.raises(ConfigError, match="the model has none"):
        audio_windows(x, "train", small_wavenet(), targets=100, seed=0, classes=[1])
