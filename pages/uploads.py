"""What the app accepts as an upload, shared by the pages and app.py, and how uploaded audio becomes a data folder.

    MAX_UPLOAD_BYTES                  the app's upload limit (launch(max_file_size=...)) and each page's per-file cap
    save_uploads(root, name, files)   uploaded audio -> a new data folder root/name/{train,valid}
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import soundfile as sf

from core.audio import read_audio, write_wav
from core.errors import AudioError, ConfigError
from core.run_files import check_run_name

MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_FILES = 200
VALID_SHARE = 5  # an uploaded folder sends every 5th file (at least one) to valid/


def save_uploads(root: str | os.PathLike, name: str, files: list[str] | None) -> Path:
    """Write uploaded audio files as 16-bit WAVs into a new folder root/name/{train,valid}; returns the folder.

    Every file is validated by core.audio.read_audio (and kept at its own sample rate). With several
    files, every 5th one (at least one) goes to valid/; a single file is cut: its first 80 % train, the
    rest valid. AudioError names a file that cannot be used; nothing is left behind on an error.
    """
    if not name:
        raise ConfigError("name the new data folder")
    check_run_name(name)
    files = [f for f in (files or []) if f]
    if not files:
        raise ConfigError("upload one or more WAV, FLAC or OGG files")
    if len(files) > MAX_UPLOAD_FILES:
        raise ConfigError(f"{len(files)} files uploaded; at most {MAX_UPLOAD_FILES} at once")
    folder = Path(root) / name
    if folder.exists():
        raise ConfigError(f"a data folder named {name!r} already exists; choose another name")
    clips = []
    for path in sorted(files, key=lambda p: Path(p).name):
        label = Path(path).name
        try:
            rate = sf.info(path).samplerate
        except (sf.SoundFileError, RuntimeError, OSError) as e:
            raise AudioError(f"{label}: could not read it as audio. Upload WAV, FLAC or OGG files.") from e
        try:
            clips.append((Path(path).stem, read_audio(path, rate, max_bytes=MAX_UPLOAD_BYTES), rate))
        except AudioError as e:
            raise AudioError(f"{label}: {e}") from e
    if len(clips) == 1:
        stem, audio, rate = clips[0]
        cut = int(len(audio) * 0.8)
        if cut == 0 or cut == len(audio):
            raise AudioError(f"{stem} is too short to split into training and validation audio; upload more")
        parts = [("train", stem, audio[:cut], rate), ("valid", stem, audio[cut:], rate)]
    else:
        parts = [("valid" if i % VALID_SHARE == VALID_SHARE - 1 or (i == len(clips) - 1 and len(clips) < VALID_SHARE)
                  else "train", stem, audio, rate) for i, (stem, audio, rate) in enumerate(clips)]
    tmp = folder.with_name(f".{name}.uploading")
    try:
        for i, (split, stem, audio, rate) in enumerate(parts):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]
            write_wav(tmp / split / f"{i:03d}_{safe}.wav", audio, rate)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
