"""Reading, validating, resampling and writing audio.

`read_audio` turns anything libsndfile reads (WAV, FLAC, OGG/Vorbis...; any sample
rate, channel count or sample format) into a float32 mono signal `(T,)` at the
requested rate. `write_wav` writes such a signal as a 16-bit PCM WAV, atomically.
`to_int16` converts a signal to the int16 samples Gradio plays unchanged.

Errors:
- `AudioError` (a `StudioError`) for input a person supplied that cannot be used:
  a missing path, a file that is not audio or is truncated, no samples, NaN or
  infinite samples, longer than `max_seconds`, larger than `max_bytes`. The message
  says what was wrong and what to upload instead.
- `ValueError` / `TypeError` for a bad argument from code (a non-positive sample rate,
  an audio array of the wrong shape or dtype...), naming the argument.
"""

import io
import math
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from core.errors import AudioError

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_WHAT_TO_UPLOAD = "Upload a WAV, FLAC or OGG file."
MAX_FILE_RATE = 384_000  # Hz; a file's rate above this is refused before decoding
MAX_CHANNELS = 64  # a file with more channels is refused before decoding
BLOCK_FRAMES = 16_384  # frames decoded at a time: at most 4 MiB of float32 for MAX_CHANNELS
TAIL_MARGIN_SECONDS = 0.1  # decoded before a tail read's first kept sample, for the resampler


def _check_sample_rate(sample_rate: int) -> None:
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or sample_rate <= 0
    ):
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")


def _open_source(source: AudioSource, max_bytes: int) -> tuple[BinaryIO, str]:
    """A seekable binary stream over `source` and a name for messages; checks the size first."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioError(
                f"no audio file at {str(path)!r}. Check the path, or upload a WAV, FLAC or OGG file."
            )
        size = path.stat().st_size
        name = path.name
        if size > max_bytes:
            raise AudioError(_too_large(name, size, max_bytes))
        return path.open("rb"), name
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the uploaded audio"
    elif hasattr(source, "read"):
        # Read one byte past the limit: enough to know it is too large, never more.
        data, name = source.read(max_bytes + 1), "the uploaded audio"
        if not isinstance(data, bytes):
            raise TypeError("source must be opened in binary mode ('rb')")
    else:
        raise TypeError(
            f"source must be a path, bytes or a binary file object, got {type(source).__name__}"
        )
    if len(data) > max_bytes:
        raise AudioError(_too_large(name, len(data), max_bytes))
    return io.BytesIO(data), name


def _too_large(name: str, size: int, max_bytes: int) -> str:
    return (
        f"{name} is {size / 2**20:.1f} MiB, over the limit of {max_bytes / 2**20:.1f} MiB. "
        "Upload a shorter or compressed (FLAC/OGG) file."
    )


def read_audio(
    source: AudioSource,
    sample_rate: int,
    *,
    max_seconds: float = 600.0,
    max_bytes: int = 100 * 2**20,
    last_seconds: float | None = None,
) -> np.ndarray:
    """Read `source` as float32 mono audio `(T,)` at `sample_rate` Hz; with `last_seconds`, only its end.

    `source` is a path, the file's bytes, or a binary file object. Channels are mixed
    by their mean; a different rate is converted with soxr ("HQ"). Float files may hold
    samples beyond [-1, 1]; the result is clipped to [-1, 1] after resampling.

    `last_seconds` returns the last round(last_seconds * sample_rate) samples (all, if the file is
    shorter) and decodes only them, plus a fraction of a second before them for the resampler: the
    file is seeked to its tail, so a long compressed upload costs no more than a short one. The
    samples equal the end of a whole-file read to float rounding.

    Nothing is decoded before the size is checked against `max_bytes` and the header against
    `max_seconds`, MAX_CHANNELS and MAX_FILE_RATE. Decoding goes BLOCK_FRAMES frames at a time,
    each block mixed to mono and resampled before the next is read, so memory holds one block of
    every channel plus the mono result at `sample_rate`, never the whole decoded file. Raises
    `AudioError` for input that cannot be used (see the module docstring).
    """
    _check_sample_rate(sample_rate)
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    if last_seconds is not None and not (isinstance(last_seconds, (int, float)) and last_seconds > 0):
        raise ValueError(f"last_seconds must be None or positive, got {last_seconds!r}")

    stream, name = _open_source(source, max_bytes)
    with stream:
        try:
            with sf.SoundFile(stream) as f:
                _check_header(f, name, max_seconds)
                start = _tail_start(f.frames, f.samplerate, sample_rate, last_seconds)
                if start:
                    f.seek(start)
                mono = _read_mono(f, name, sample_rate)
        except (sf.SoundFileError, RuntimeError) as e:
            reason = (
                str(getattr(e, "error_string", e)).removeprefix("Error : ").rstrip(".")
            )
            raise AudioError(
                f"could not read {name} as audio: {reason}. {_WHAT_TO_UPLOAD}"
            ) from e

    if mono is None:
        raise AudioError(
            f"{name} contains no samples. Upload a file with some sound in it."
        )
    if mono.shape[0] == 0:
        raise AudioError(
            f"{name} is too short to hold a sample at {sample_rate} Hz. Upload a longer clip."
        )
    if last_seconds is not None:
        mono = mono[-max(1, round(last_seconds * sample_rate)):]
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def _check_header(f: sf.SoundFile, name: str, max_seconds: float) -> None:
    """Refuse, from the header alone, a file whose decoding could cost more than its duration allows."""
    rate, frames, channels = f.samplerate, f.frames, f.channels
    if rate > MAX_FILE_RATE:
        raise AudioError(f"{name} has a sample rate of {rate:,} Hz, over the limit of {MAX_FILE_RATE:,} Hz. "
                         "Export it at 48 kHz or less.")
    if channels > MAX_CHANNELS:
        raise AudioError(f"{name} has {channels} channels, over the limit of {MAX_CHANNELS}. "
                         "Mix it down to mono or stereo.")
    if frames / rate > max_seconds:
        raise AudioError(
            f"{name} is {frames / rate:.1f} s long, over the limit of {max_seconds:g} s. "
            "Upload a shorter clip."
        )


def _tail_start(frames: int, rate: int, sample_rate: int, last_seconds: float | None) -> int:
    """The first frame to decode for the last `last_seconds` at `sample_rate`: 0 for the whole file.

    It lies TAIL_MARGIN_SECONDS before the part kept, so the resampler's filter has settled there,
    and on a frame whose time is a whole number of output samples, so the output grid is the same
    as a whole-file read's.
    """
    if last_seconds is None:
        return 0
    wanted = math.ceil(last_seconds * rate) + math.ceil(TAIL_MARGIN_SECONDS * rate)
    step = rate // math.gcd(rate, sample_rate)
    return max(0, frames - wanted) // step * step


def _read_mono(f: sf.SoundFile, name: str, sample_rate: int) -> np.ndarray | None:
    """The rest of `f` mixed to mono and resampled to `sample_rate`, float32 (T,); None if nothing was left."""
    resampler = None
    if f.samplerate != sample_rate:
        resampler = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
    parts, decoded = [], 0
    while True:
        block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)  # (n, C)
        decoded += block.shape[0]
        if not np.isfinite(block).all():
            raise AudioError(
                f"{name} contains NaN or infinite samples. Export it again as 16-bit PCM."
            )
        last = block.shape[0] < BLOCK_FRAMES
        mono = block.mean(axis=1, dtype=np.float32)
        parts.append(resampler.resample_chunk(mono, last=last) if resampler else mono)
        if last:
            break
    return np.concatenate(parts) if decoded else None


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] (any shape) -> int16, same shape: clip, scale by 32768, round.

    This is the inverse of how soundfile reads 16-bit PCM (sample / 32768), so a
    write/read round trip loses at most one quantisation step. Raises ValueError for
    NaN or infinite samples.
    """
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be a float array, got dtype {audio.dtype}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    return np.clip(np.round(audio.astype(np.float64) * 32768.0), -32768, 32767).astype(
        np.int16
    )


def _pcm16(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float samples `(T,)` -> int16 `(T,)`, once the rate and the shape are checked."""
    _check_sample_rate(sample_rate)
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must have shape (T,), got {audio.shape}")
    return to_int16(audio)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Float samples `(T,)` in [-1, 1] as the bytes of a 16-bit PCM WAV (converted by `to_int16`).

    What a streaming player is given: bytes go to its encoder as they are, where a (rate, array) pair would be
    written to a cache file named by its content, a file two runs making the same audio would write at once.
    """
    out = io.BytesIO()
    sf.write(out, _pcm16(audio, sample_rate), int(sample_rate), subtype="PCM_16", format="WAV")
    return out.getvalue()


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write float samples `(T,)` in [-1, 1] to `path` as a 16-bit PCM WAV.

    Samples are converted by `to_int16` (values outside [-1, 1] are clipped). Parent
    folders are created; the file is written to a temporary name in the same folder and
    moved into place, so a reader never sees a half-written file.
    """
    pcm = _pcm16(audio, sample_rate)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(
            tmp, 0o644
        )  # mkstemp makes it private; a written WAV is an ordinary file
        sf.write(tmp, pcm, int(sample_rate), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
