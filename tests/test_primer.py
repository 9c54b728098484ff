"""core.primer: trailing silence cut, level matching, warnings for silent and quiet primers; and the gain in
core.continuation (the model hears primer * gain, the continuation comes back divided by it)."""

import math

import numpy as np
import pytest
import torch

from core.continuation import (
    DEFAULT_TEMPERATURE,
    continue_audio,
    dequantise,
    heard,
    quantise,
    suggested_temperature,
)
from core.errors import ConfigError
from core.models.wavenet import WaveNet
from core.primer import (
    MAX_GAIN_DB,
    SILENCE_DBFS,
    TARGET_PEAK_DBFS,
    TRIM_SEARCH_SECONDS,
    Loudness,
    loudness_of,
    peak_dbfs,
    prepare_primer,
    read_seconds,
    rms_dbfs,
    trim_trailing_silence,
)
from tests.conftest import tiny_audio_config

SR = 8000


def tone(seconds: float, amplitude: float, freq: float = 440.0) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * SR)) / SR)).astype(np.float32)


def db(amplitude: float) -> float:
    return 20 * math.log10(amplitude)


def test_trailing_frames_below_the_threshold_are_cut_and_louder_ones_kept() -> None:
    sound = tone(0.5, 0.5)
    below = tone(0.3, 10 ** ((SILENCE_DBFS - 6) / 20) * math.sqrt(2))  # RMS 6 dB under the threshold
    above = tone(0.3, 10 ** ((SILENCE_DBFS + 6) / 20) * math.sqrt(2))
    assert len(trim_trailing_silence(np.concatenate([sound, np.zeros(SR, np.float32)]), SR)) == len(sound)
    assert len(trim_trailing_silence(np.concatenate([sound, below]), SR)) == len(sound)
    assert len(trim_trailing_silence(np.concatenate([sound, above]), SR)) == len(sound) + len(above)
    assert len(trim_trailing_silence(np.zeros(SR, np.float32), SR)) == 0


def test_primer_is_the_last_seconds_before_the_trailing_silence() -> None:
    clip = np.concatenate([tone(2.0, 0.5, 330), tone(1.0, 0.5, 440), np.zeros(SR, np.float32)])
    primer = prepare_primer(clip, SR, 1.0)
    np.testing.assert_array_equal(primer.audio, clip[2 * SR:3 * SR])
    assert primer.trimmed_seconds == 1.0 and primer.gain == 1.0 and primer.warnings == ()
    assert "Cut 1.00 s of trailing silence" in primer.notes[0]
    untrimmed = prepare_primer(clip, SR, 1.0, trim=False)
    np.testing.assert_array_equal(untrimmed.audio, clip[-SR:])
    assert untrimmed.trimmed_seconds == 0 and "silent" in untrimmed.warnings[0]


def test_a_silent_clip_is_kept_as_it_is_with_a_warning_and_no_gain() -> None:
    primer = prepare_primer(np.zeros(3 * SR, np.float32), SR, 1.0, match_level=True)
    assert len(primer.audio) == SR and primer.gain == 1.0 and primer.peak_dbfs == -math.inf
    assert len(primer.warnings) == 1 and "silent" in primer.warnings[0]


def test_a_quiet_primer_warns_without_level_matching_and_is_raised_to_the_target_with_it() -> None:
    quiet = tone(1.0, 0.01)  # -40 dBFS, the quiet piano of issue #14
    plain = prepare_primer(quiet, SR, 1.0)
    assert plain.gain == 1.0 and "very quiet" in plain.warnings[0] and "level matching" in plain.warnings[0]
    matched = prepare_primer(quiet, SR, 1.0, match_level=True)
    assert matched.warnings == ()
    assert peak_dbfs(matched.audio * matched.gain) == pytest.approx(TARGET_PEAK_DBFS, abs=1e-4)
    assert "Level matched: primer +39.0 dB" in matched.notes[0]
    loud = prepare_primer(tone(1.0, 1.0), SR, 1.0, match_level=True)
    assert loud.gain == pytest.approx(10 ** (TARGET_PEAK_DBFS / 20), rel=1e-4)  # lowered too


def test_level_matching_raises_by_at_most_its_limit_and_says_so() -> None:
    faint = tone(1.0, 10 ** (-55 / 20))
    primer = prepare_primer(faint, SR, 1.0, match_level=True)
    assert primer.gain == pytest.approx(10 ** (MAX_GAIN_DB / 20))
    assert "limit of 40 dB" in primer.warnings[0]


def test_a_model_trained_at_an_rms_level_hears_its_primer_at_that_rms_but_never_past_full_scale() -> None:
    speech = Loudness("rms", -20.0)  # the speech corpus: every file at RMS 0.1
    primer = prepare_primer(tone(1.0, 0.05), SR, 1.0, match_level=True, target=speech)  # RMS 0.035: -29 dBFS
    assert rms_dbfs(primer.audio * primer.gain) == pytest.approx(-20.0, abs=1e-3)
    assert "to -20 dBFS RMS, the model's training level" in primer.notes[0]
    clicks = np.zeros(SR, np.float32)
    clicks[::800] = 0.5  # a peak of -6 dBFS at an RMS of -36: reaching -20 RMS would clip it
    capped = prepare_primer(clicks, SR, 1.0, match_level=True, target=speech)
    assert capped.gain == pytest.approx(2.0, rel=1e-4)  # +6 dB, not the +16 dB the RMS asks for
    assert peak_dbfs(capped.audio * capped.gain) == pytest.approx(0.0, abs=1e-4)
    quiet = prepare_primer(tone(1.0, 0.002), SR, 1.0, target=speech)  # -57 dBFS RMS, 37 dB under the target
    assert "very quiet" in quiet.warnings[0] and "-20 dBFS RMS" in quiet.warnings[0]


def test_a_models_training_loudness_comes_from_its_config_and_defaults_to_the_peak() -> None:
    assert loudness_of(tiny_audio_config()) == Loudness("peak", TARGET_PEAK_DBFS)
    config = tiny_audio_config(extra={"loudness": {"measure": "rms", "dbfs": -20}})
    assert loudness_of(config) == Loudness("rms", -20)
    for bad in ({"measure": "lufs", "dbfs": -20}, {"measure": "rms", "dbfs": 3}, {"level": -20}, -20):
        with pytest.raises(ConfigError, match="loudness"):
            loudness_of(tiny_audio_config(extra={"loudness": bad}))


def test_read_seconds_leaves_room_for_trailing_silence_only_when_trimming() -> None:
    assert read_seconds(1.5) == 1.5 + TRIM_SEARCH_SECONDS and read_seconds(1.5, trim=False) == 1.5


def test_prepare_primer_refuses_a_non_positive_length() -> None:
    with pytest.raises(ValueError, match="prime_seconds"):
        prepare_primer(tone(1.0, 0.5), SR, 0)


def test_with_a_gain_the_model_hears_the_raised_primer_and_the_continuation_is_scaled_back() -> None:
    torch.manual_seed(0)
    model = WaveNet(tiny_audio_config())
    primer, gain = tone(0.1, 0.01), 89.0
    np.testing.assert_allclose(heard(model, primer, gain) * np.float32(gain),
                               dequantise(model, quantise(model, primer * gain)), rtol=1e-6)
    raised = next(continue_audio(model, primer * gain, 0.05, seed=3, method="cached"))
    scaled = next(continue_audio(model, primer, 0.05, seed=3, method="cached", gain=gain))
    np.testing.assert_allclose(scaled * gain, raised, rtol=1e-6)
    assert db(np.abs(scaled).max()) <= db(1 / gain) + 1e-4


def test_a_models_suggested_temperature_comes_from_its_config_or_the_default() -> None:
    assert suggested_temperature(None) == DEFAULT_TEMPERATURE == 0.85 and suggested_temperature({}) == 0.85
    assert suggested_temperature({"temperature": 1}) == 1.0
    for bad in (3.0, -0.1, "hot", True):
        with pytest.raises(ConfigError, match="extra.temperature"):
            suggested_temperature({"temperature": bad})
