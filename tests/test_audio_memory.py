"""Reading a small compressed file that decodes to a lot of audio costs memory for what is used, not for the file.

Issue #14: a 1.26 MB stereo Ogg at 96 kHz lasting 599 s took the CLI to 995 MB, because the whole file was
decoded for the last second. Each case runs in a fresh subprocess that imports the modules, notes its peak RSS
(`resource.getrusage`, the baseline), reads the file, and reports the peak again; the bound is on the growth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio import BLOCK_FRAMES, MAX_CHANNELS, MAX_FILE_RATE, read_audio
from core.errors import AudioError

ROOT = Path(__file__).resolve().parents[1]
RATE, SECONDS = 96_000, 599  # the file: just under the 600 s limit
MIB = 2**20
TAIL_BOUND = 16 * MIB  # growth allowed for reading a primer's worth (decoding all of the file: over 600 MiB)

PROGRAM = """
import json, resource, sys
from core.audio import read_audio
if sys.argv[2] == "page":
    import pages.audio
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path, how = sys.argv[1], sys.argv[2]
if how == "whole":
    samples = len(read_audio(path, 8000))
elif how == "tail":
    samples = len(read_audio(path, 8000, last_seconds=10.0))
else:
    samples = len(pages.audio.load_primer(path, 8000, 10.0).audio)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline": baseline * 1024, "peak": peak * 1024, "samples": samples}))
"""


def silence(path: Path, seconds: int, rate: int = RATE, channels: int = 2, **kwargs) -> Path:
    """A long file of stereo silence, written a few seconds at a time (libsndfile's Vorbis encoder crashes on
    very large writes): a few hundred kB on disk."""
    block = np.zeros((5 * rate, channels), np.float32)
    with sf.SoundFile(path, "w", rate, channels, **kwargs) as f:
        for start in range(0, seconds * rate, len(block)):
            f.write(block[: seconds * rate - start])
    return path


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return silence(tmp_path_factory.mktemp("bomb") / "long.flac", SECONDS, format="FLAC", subtype="PCM_16")


def growth(path: Path, how: str) -> dict:
    """Peak RSS growth (bytes) of reading `path` in a fresh process, over the process with everything imported."""
    result = subprocess.run([sys.executable, "-c", PROGRAM, str(path), how], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.splitlines()[-1])
    return {"growth": reply["peak"] - reply["baseline"], "samples": reply["samples"]}


def test_the_audio_page_reads_a_long_compressed_upload_within_a_primers_memory(long_flac: Path) -> None:
    assert long_flac.stat().st_size < MIB
    measured = growth(long_flac, "page")
    assert measured["samples"] == 10 * 8000
    assert measured["growth"] < TAIL_BOUND, f"{measured['growth'] / MIB:.0f} MiB to read a 10 s primer"


def test_a_tail_read_of_a_long_compressed_file_stays_within_the_bound(long_flac: Path) -> None:
    measured = growth(long_flac, "tail")
    assert measured["samples"] == 10 * 8000 and measured["growth"] < TAIL_BOUND


def test_a_tail_read_of_a_long_ogg_vorbis_file_stays_within_the_bound(tmp_path: Path) -> None:
    ogg = silence(tmp_path / "long.ogg", 120, format="OGG", subtype="VORBIS")  # 120 s: Vorbis encodes slowly
    measured = growth(ogg, "tail")
    assert measured["samples"] == 10 * 8000 and measured["growth"] < TAIL_BOUND


def test_a_whole_read_holds_the_mono_result_not_the_decoded_file(long_flac: Path) -> None:
    """599 s of 96 kHz stereo is 440 MiB of float32; the result at 8 kHz is 18 MiB."""
    measured = growth(long_flac, "whole")
    result_bytes = SECONDS * 8000 * 4
    assert measured["samples"] == SECONDS * 8000
    assert measured["growth"] < 4 * result_bytes + TAIL_BOUND, f"{measured['growth'] / MIB:.0f} MiB"


@pytest.mark.parametrize(("rate", "channels", "subtype", "frames"),
                         [(44100, 2, "PCM_16", 100_000), (22050, 1, "FLAC", 50_000), (16000, 3, "PCM_24", 40_000),
                          (8000, 1, "PCM_16", 3 * BLOCK_FRAMES)])
def test_a_tail_read_equals_the_end_of_a_whole_read(tmp_path: Path, rate: int, channels: int, subtype: str,
                                                     frames: int) -> None:
    rng = np.random.default_rng(0)
    data = np.clip(0.3 * rng.standard_normal((frames, channels)), -1, 1)
    path = tmp_path / ("x.flac" if subtype == "FLAC" else "x.wav")
    sf.write(path, data, rate, subtype="PCM_16" if subtype == "FLAC" else subtype)
    whole = read_audio(path, 8000)
    for seconds in (0.5, 1.0, 100.0):
        tail = read_audio(path, 8000, last_seconds=seconds)
        assert len(tail) == min(len(whole), round(seconds * 8000))
        np.testing.assert_allclose(tail, whole[-len(tail):], atol=1e-6)


@pytest.mark.parametrize(("rate", "channels", "message"),
                         [(MAX_FILE_RATE + 1, 1, "sample rate of"), (8000, MAX_CHANNELS + 1, "channels, over")])
def test_a_header_over_the_rate_or_channel_limit_is_refused_before_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int, channels: int, message: str) -> None:
    path = tmp_path / "wide.wav"
    sf.write(path, np.zeros((100, channels), np.float32), rate, subtype="PCM_16")

    def decode_attempted(*args, **kwargs):
        raise AssertionError("samples were decoded before the header was checked")

    monkeypatch.setattr(sf.SoundFile, "read", decode_attempted)
    with pytest.raises(AudioError, match=message):
        read_audio(path, 8000)


def test_last_seconds_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros(100), 8000)
    with pytest.raises(ValueError, match="last_seconds"):
        read_audio(path, 8000, last_seconds=0)
