"""The C kernels of core/generation: compiled on first use, cached on disk, and the weight packing they read.

Each kernel is one C file here (`fused_kernel.c` for the WaveNet, `pixelcnn_kernel.c` for the
PixelCNN) that includes `kernel_common.h`. `load(source, name)` compiles it with the system's C
compiler (`$CC`, else `cc`) the first time it is needed and keeps the library in $STUDIO_CACHE
(default ~/.cache/autoregressive-studio) as `NAME-HASH.so`, HASH covering the source, the header
and the flags; a later process loads it without compiling. A kernel with paths for a newer target
(the WaveNet's AMX and AVX-512 bfloat16 and int8 products) names the flags of builds without them,
tried in turn when the compiler refuses the first. Without a compiler, with an unwritable cache or on a CPU
without AVX2/FMA it raises KernelUnavailable, and generation falls back to the PyTorch steppers.

Packing (numpy, float32): every channel count is zero-padded to a multiple of PANEL = 16, and a
(K, N) matrix is stored as N/16 panels of (K, 16) (`panels`, `panel_layout`); a gate's 2C pre-activations go in
blocks of 16, each tanh block followed by its sigmoid block (`gate_order`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
HEADER = HERE / "kernel_common.h"
FLAGS = ["-O3", "-mavx2", "-mfma", "-fPIC", "-shared", "-pthread"]
PANEL = 16
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class KernelUnavailable(RuntimeError):
    """A kernel cannot run here: no C compiler, a failed build, or a CPU without AVX2/FMA."""


def cache_dir() -> Path:
    """Where compiled kernels are kept: $STUDIO_CACHE, else ~/.cache/autoregressive-studio."""
    root = os.environ.get("STUDIO_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "autoregressive-studio"


def _build(source: Path, target: Path, flags: list[str]) -> None:
    """Compile `source` into `target` atomically (concurrent processes may race to build it)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    except OSError as e:
        raise KernelUnavailable(f"cannot write the compiled kernel to {target.parent}: {e}") from e
    os.close(fd)
    cmd = [os.environ.get("CC", "cc"), *flags, str(source), "-o", tmp, "-lm"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        os.unlink(tmp)
        raise KernelUnavailable(f"cannot run the C compiler {cmd[0]!r}: {e}") from e
    if done.returncode != 0:
        os.unlink(tmp)
        raise KernelUnavailable(f"compiling {source.name} failed:\n{done.stderr.strip()}")
    os.replace(tmp, target)


@functools.cache
def load(source: Path, name: str, fallbacks: tuple[tuple[str, ...], ...] = ()) -> ctypes.CDLL:
    """The compiled `source`, built on first use and cached on disk as `name`-HASH.so; it must export
    `int NAME_cpu_ok(void)`. A source the compiler refuses is built again with FLAGS + each of `fallbacks`
    in turn (e.g. -DFUSED_NO_AMX, then -DFUSED_NO_AVX512). KernelUnavailable if it cannot be built, loaded
    or run here."""
    errors = []
    for flags in (FLAGS, *([*FLAGS, *extra] for extra in fallbacks)):
        key = hashlib.sha256(source.read_bytes() + HEADER.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
        target = cache_dir() / f"{name}-{key}.so"
        try:
            if not target.exists():
                _build(source, target, flags)
            break
        except KernelUnavailable as e:
            errors.append(e)
    else:
        raise errors[0]
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as e:
        raise KernelUnavailable(f"cannot load {target}: {e}") from e
    if not getattr(lib, f"{name}_cpu_ok")():
        raise KernelUnavailable(f"this CPU lacks AVX2/FMA, which the {name} kernel needs")
    return lib


_running = 0  # kernel calls in flight in this process, so concurrent users don't oversubscribe the cores
_running_lock = threading.Lock()


def buildable(library: Callable[[], ctypes.CDLL]) -> bool:
    """Whether `library()` (a kernel's loader) builds its kernel, or finds it built, for this CPU."""
    try:
        library()
    except KernelUnavailable:
        return False
    return True


@contextmanager
def cores_for(batch: int, requested: int | None) -> Iterator[int]:
    """The threads one kernel call gets: `requested`, else 1 at batch 1, else every core that the
    other calls in flight (of either kernel) leave free; the call counts as in flight inside the block."""
    global _running
    with _running_lock:
        threads = requested if requested is not None else (1 if batch == 1 else max(1, CORES - _running))
        _running += 1
    try:
        yield threads
    finally:
        with _running_lock:
            _running -= 1


def pointer_fields(*names: str) -> list[tuple[str, type]]:
    """ctypes.Structure fields: one void pointer per name."""
    return [(n, ctypes.c_void_p) for n in names]


def pad(n: int) -> int:
    """n rounded up to a multiple of PANEL."""
    return -(-n // PANEL) * PANEL


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float32 numpy array (a copy off the CPU or from another dtype)."""
    return t.detach().cpu().numpy().astype(np.float32)


def zero_padded(x: np.ndarray, *shape: int) -> np.ndarray:
    """x zero-padded at the end of each axis to `shape`."""
    out = np.zeros(shape, np.float32)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


def panel_layout(w: np.ndarray, group: int = 1) -> np.ndarray:
    """(rows, cols) of any dtype, cols a multiple of 16 and rows of `group` -> cols/16 panels of
    (rows/group, 16, group), flattened: `group` consecutive rows of a column side by side, the rows
    one 32-bit input word covers in a reduced-precision product (bfloat16 2, int8 4; float32 1)."""
    rows, cols = w.shape
    return np.ascontiguousarray(w.reshape(rows // group, group, cols // PANEL, PANEL).transpose(2, 0, 3, 1)).reshape(-1)


def panels(w: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(K, N) float32 -> padded to (rows, cols) and stored as cols/16 panels of (rows, 16), flattened."""
    return panel_layout(zero_padded(w, rows, cols))


def gate_order(x: np.ndarray, c: int, c_pad: int) -> np.ndarray:
    """(..., 2C) [tanh | sigmoid] -> (..., 2 C_pad) in the kernels' blocks: tanh 16, sigmoid 16, ..."""
    lead = x.shape[:-1]
    halves = zero_padded(x.reshape(*lead, 2, c), *lead, 2, c_pad).reshape(*lead, 2, c_pad // PANEL, PANEL)
    return np.ascontiguousarray(np.swapaxes(halves, -3, -2)).reshape(*lead, 2 * c_pad)
