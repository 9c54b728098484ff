"""core.pitch: a clip's median f0 and pitch register on signals with known answers; the pitch-conditioned
WaveNet's class from its primer (core.continuation.class_for), and fine-tuning into one (a zero embedding)."""

import numpy as np
import pytest
import torch

from core.checkpoints import load_weights_into, save_checkpoint
from core.conditioning import Cond
from core.continuation import class_for, continue_audio
from core.errors import ConfigError
from core.models.wavenet import WaveNet, WaveNetConfig
from core.pitch import PITCH_CLASSES, PITCH_EDGES, median_f0, pitch_class

SR = 8000


def pulses(f0: float, seconds: float = 0.5, amplitude: float = 0.3) -> np.ndarray:
    """A band-limited pulse train at f0 Hz (every harmonic below 3.5 kHz, equal strength)."""
    t = np.arange(round(seconds * SR)) / SR
    return amplitude * np.cos(2 * np.pi * f0 * np.outer(t, np.arange(1, int(3500 / f0) + 1))).mean(axis=1)


def pitch_wavenet(**kw) -> WaveNet:
    return WaveNet(WaveNetConfig(quantization_levels=64, dilations=[1, 2], residual_channels=8, dilation_channels=8,
                                 skip_channels=8, head_channels=8, sample_rate=SR, **kw))


@pytest.mark.parametrize("f0", [80.0, 110.0, 200.0, 260.0])
def test_the_median_f0_of_a_pulse_train_is_its_f0_and_its_register_the_band_holding_it(f0):
    assert median_f0(pulses(f0), SR) == pytest.approx(f0, rel=0.02)
    expected = sum(f0 >= edge for edge in PITCH_EDGES)
    assert pitch_class(pulses(f0), SR) == expected
    assert pitch_class(pulses(f0, amplitude=0.05), SR) == expected  # the register does not depend on the level


def test_registers_cover_low_male_to_high_female_voices_in_order():
    classes = [pitch_class(pulses(f0), SR) for f0 in (70.0, 100.0, 130.0, 170.0, 210.0, 300.0)]
    assert classes == list(range(PITCH_CLASSES))


def test_silence_noise_and_nothing_have_no_f0_and_get_the_middle_register():
    noise = np.random.default_rng(0).normal(0, 0.1, SR // 2)
    for x in (np.zeros(SR // 2), noise, np.zeros(0), np.zeros(10)):
        assert median_f0(x, SR) == 0.0
        assert pitch_class(x, SR) == PITCH_CLASSES // 2


def test_a_pitch_conditioned_wavenet_needs_one_class_per_register():
    pitch_wavenet(n_classes=PITCH_CLASSES, classes_from="pitch")
    with pytest.raises(ConfigError, match=f"n_classes = {PITCH_CLASSES}"):
        pitch_wavenet(n_classes=3, classes_from="pitch")
    with pytest.raises(ConfigError, match="classes_from must be one of"):
        pitch_wavenet(n_classes=PITCH_CLASSES, classes_from="loudness")


def test_a_pitch_conditioned_model_continues_with_its_primers_register_unless_told_a_class():
    model = pitch_wavenet(n_classes=PITCH_CLASSES, classes_from="pitch")
    low, high = pulses(85.0), pulses(250.0)
    assert class_for(model, low, None) == 0 and class_for(model, high, None) == PITCH_CLASSES - 1
    assert class_for(model, high, 2) == 2  # an explicit class wins
    assert class_for(model, None, None) == PITCH_CLASSES // 2  # from silence: the middle register
    assert class_for(model, low * 0.01, None, gain=100.0) == 0  # the primer as the model hears it
    plain = pitch_wavenet(n_classes=3)
    with pytest.raises(ConfigError, match="choose a class"):
        class_for(plain, low, None)
    torch.manual_seed(0)
    chunks = [c for c in continue_audio(model, low, 0.05, seed=1, method="cached")]  # no class given: works
    told = [c for c in continue_audio(model, low, 0.05, seed=1, classes=0, method="cached")]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), np.concatenate(told, axis=1))


def test_fine_tuning_an_unconditioned_checkpoint_into_a_pitch_model_starts_it_as_that_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = pitch_wavenet()
    save_checkpoint(source, tmp_path / "plain")
    tuned = pitch_wavenet(n_classes=PITCH_CLASSES, classes_from="pitch")
    load_weights_into(tuned, tmp_path / "plain")
    assert torch.count_nonzero(tuned.class_embedding.weight) == 0
    x = torch.randint(0, 64, (PITCH_CLASSES, 40))
    with torch.no_grad():
        expected = source(x)
        for k in range(PITCH_CLASSES):  # every register: the source's predictions, until training moves them
            assert torch.equal(tuned(x, Cond(classes=torch.full((PITCH_CLASSES,), k))), expected)
    tuned.class_embedding.weight.data[2] += 0.5  # then a class changes what the model predicts
    with torch.no_grad():
        assert not torch.equal(tuned(x, Cond(classes=torch.full((PITCH_CLASSES,), 2))), expected)
