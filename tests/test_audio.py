import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio import read_audio, to_int16, write_wav
from core.errors import AudioError, StudioError

SR = 16000


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(
        2 * np.pi * freq * np.arange(round(seconds * rate)) / rate
    )


def peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[spectrum.argmax()])


def write(path: Path, data: np.ndarray, rate: int, **kwargs) -> Path:
    sf.write(path, data, rate, **kwargs)
    return path


def test_int16_stereo_44k_wav_is_mixed_to_mono_and_resampled(tmp_path: Path) -> None:
    left = sine(440, 1.0, 44100, amplitude=0.8)
    path = write(
        tmp_path / "stereo.wav",
        np.stack([left, np.zeros_like(left)], axis=1),
        44100,
        subtype="PCM_16",
    )
    audio = read_audio(path, SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SR) <= 2
    assert abs(peak_hz(audio, SR) - 440) <= 5
    # The mean of (0.8 sine, silence) is a 0.4 sine.
    assert np.abs(audio).max() == pytest.approx(0.4, abs=0.01)


def test_flac_22k_is_resampled_to_the_expected_length_and_pitch(tmp_path: Path) -> None:
    path = write(tmp_path / "tone.flac", sine(440, 1.5, 22050), 22050)
    audio = read_audio(path, SR)
    assert abs(len(audio) - 1.5 * SR) <= 2
    assert abs(peak_hz(audio, SR) - 440) <= 5


def test_ogg_vorbis_mono_is_read_at_the_expected_length_and_pitch(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "tone.ogg",
        sine(440, 1.0, 48000),
        48000,
        format="OGG",
        subtype="VORBIS",
    )
    audio = read_audio(path, SR)
    assert abs(len(audio) - SR) <= 2
    assert abs(peak_hz(audio, SR) - 440) <= 5


def test_float_wav_beyond_full_scale_is_clipped_to_plus_minus_one(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "loud.wav",
        sine(440, 1.0, 8000, amplitude=1.5),
        8000,
        subtype="FLOAT",
    )
    audio = read_audio(path, SR)
    assert abs(len(audio) - SR) <= 2
    assert audio.max() == 1.0 and audio.min() == -1.0
    assert abs(peak_hz(audio, SR) - 440) <= 5


def test_same_rate_int16_wav_is_read_exactly(tmp_path: Path) -> None:
    pcm = (sine(300, 0.25, SR) * 32767).astype(np.int16)
    path = write(tmp_path / "exact.wav", pcm, SR)
    np.testing.assert_array_equal(read_audio(path, SR), pcm / np.float32(32768))


def test_bytes_and_file_object_sources_read_like_a_path(tmp_path: Path) -> None:
    path = write(tmp_path / "tone.flac", sine(440, 0.5, 22050), 22050)
    expected = read_audio(path, SR)
    np.testing.assert_array_equal(read_audio(path.read_bytes(), SR), expected)
    np.testing.assert_array_equal(
        read_audio(io.BytesIO(path.read_bytes()), SR), expected
    )
    np.testing.assert_array_equal(read_audio(str(path), SR), expected)


def test_random_bytes_raise_audio_error_asking_for_wav_flac_or_ogg(
    tmp_path: Path,
) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(
        AudioError,
        match=r"could not read noise\.wav as audio: .*Upload a WAV, FLAC or OGG file",
    ):
        read_audio(path, SR)


def test_truncated_header_raises_audio_error(tmp_path: Path) -> None:
    full = write(tmp_path / "full.wav", sine(440, 0.1, SR), SR)
    path = tmp_path / "truncated.wav"
    path.write_bytes(full.read_bytes()[:20])
    with pytest.raises(AudioError, match="could not read truncated.wav as audio"):
        read_audio(path, SR)


def test_truncated_flac_raises_audio_error(tmp_path: Path) -> None:
    full = write(tmp_path / "full.flac", sine(440, 1.0, SR), SR)
    path = tmp_path / "truncated.flac"
    path.write_bytes(full.read_bytes()[:3000])
    with pytest.raises(AudioError, match="could not read truncated.flac as audio"):
        read_audio(path, SR)


def test_zero_sample_wav_raises_audio_error(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.wav", np.zeros(0), SR)
    with pytest.raises(AudioError, match="contains no samples"):
        read_audio(path, SR)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise_audio_error(tmp_path: Path, bad: float) -> None:
    data = sine(440, 0.1, SR)
    data[10] = bad
    path = write(tmp_path / "bad.wav", data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        read_audio(path, SR)


def test_over_max_seconds_raises_audio_error_before_decoding(
    tmp_path: Path, monkeypatch
) -> None:
    path = write(tmp_path / "long.wav", sine(440, 2.0, SR), SR)

    def decode_attempted(*args, **kwargs):
        raise AssertionError("samples were decoded before the duration was checked")

    monkeypatch.setattr(sf.SoundFile, "read", decode_attempted)
    with pytest.raises(AudioError, match=r"2\.0 s long, over the limit of 1 s"):
        read_audio(path, SR, max_seconds=1.0)


@pytest.mark.parametrize(
    "as_source", [lambda p: p, Path.read_bytes, lambda p: io.BytesIO(p.read_bytes())]
)
def test_over_max_bytes_raises_audio_error(tmp_path: Path, as_source) -> None:
    path = write(tmp_path / "big.wav", sine(440, 1.0, SR), SR)
    with pytest.raises(AudioError, match="over the limit of .* MiB"):
        read_audio(as_source(path), SR, max_bytes=1000)


def test_missing_path_raises_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no audio file at"):
        read_audio(tmp_path / "nope.wav", SR)


def test_audio_error_is_a_studio_error_and_a_value_error() -> None:
    assert issubclass(AudioError, StudioError) and issubclass(AudioError, ValueError)


@pytest.mark.parametrize("rate", [0, -16000, 16000.0, True])
def test_bad_sample_rate_raises_value_error_naming_it(tmp_path: Path, rate) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        read_audio(tmp_path / "x.wav", rate)
    with pytest.raises(ValueError, match="sample_rate"):
        write_wav(tmp_path / "x.wav", np.zeros(4), rate)


def test_write_wav_round_trip_error_is_below_one_int16_step(tmp_path: Path) -> None:
    audio = np.concatenate(
        [[-1.0, 1.0, 0.0], np.random.default_rng(0).uniform(-1, 1, 5000)]
    )
    path = tmp_path / "new" / "folder" / "out.wav"
    write_wav(path, audio, 22050)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV",
        "PCM_16",
        22050,
        1,
    )
    back, _ = sf.read(path, dtype="float64")
    assert np.abs(back - audio).max() < 1 / 32767 + 1e-9
    np.testing.assert_array_equal(read_audio(path, 22050), back.astype(np.float32))


def test_write_wav_replaces_atomically_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "out.wav"
    write_wav(path, np.full(100, 0.25), SR)
    write_wav(path, np.full(50, -0.5), SR)
    assert len(read_audio(path, SR)) == 50

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_wav(path, np.zeros(10), SR)
    assert len(read_audio(path, SR)) == 50
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((10, 2)), "shape"),
        (np.array([0.0, np.nan]), "NaN"),
        (np.zeros(4, dtype=np.int16), "float"),
    ],
)
def test_write_wav_rejects_bad_audio_with_value_error(
    tmp_path: Path, audio: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_wav(tmp_path / "out.wav", audio, SR)
    assert not (tmp_path / "out.wav").exists()


def test_to_int16_clips_and_rounds() -> None:
    pcm = to_int16(
        np.array([-2.0, -1.0, -0.5, 0.0, 0.3 / 32768, 0.7 / 32768, 1.0, 2.0])
    )
    assert pcm.dtype == np.int16
    np.testing.assert_array_equal(pcm, [-32768, -32768, -16384, 0, 0, 1, 32767, 32767])
