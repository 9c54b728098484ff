import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.codecs import (
    KINDS,
    decode,
    encode,
    linear_decode,
    linear_encode,
    mulaw_decode,
    mulaw_encode,
)

FIXED_QS = [2, 3, 256, 65536]
qs = st.one_of(st.sampled_from(FIXED_QS), st.integers(2, 65536))
kinds = st.sampled_from(KINDS)
samples = arrays(
    np.float64,
    st.integers(1, 64),
    elements=st.floats(-1.5, 1.5, allow_nan=False, allow_infinity=False),
)


def to_domain(x: np.ndarray, q: int, kind: str) -> np.ndarray:
    """Reference (float64) map into the domain where the grid is uniform."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    if kind == "linear":
        return x
    mu = q - 1
    return np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)


def grid(q: int) -> np.ndarray:
    return -1.0 + 2.0 * np.arange(q) / (q - 1)


@pytest.mark.parametrize("q", FIXED_QS)
@pytest.mark.parametrize("kind", KINDS)
def test_encode_of_decode_is_identity_on_every_code(q: int, kind: str) -> None:
    codes = np.arange(q, dtype=np.int64)
    np.testing.assert_array_equal(encode(decode(codes, q, kind), q, kind), codes)


@settings(max_examples=30, deadline=None)
@given(q=st.integers(2, 65536), kind=kinds)
def test_encode_of_decode_is_identity_for_random_q(q: int, kind: str) -> None:
    codes = np.unique(np.linspace(0, q - 1, num=min(q, 4096)).round().astype(np.int64))
    np.testing.assert_array_equal(encode(decode(codes, q, kind), q, kind), codes)


@settings(max_examples=200, deadline=None)
@given(x=samples, q=qs, kind=kinds)
def test_encode_picks_the_nearest_grid_value(x: np.ndarray, q: int, kind: str) -> None:
    codes = encode(x, q, kind)
    assert codes.dtype == np.int64 and codes.shape == x.shape
    assert codes.min() >= 0 and codes.max() < q
    y, g = to_domain(x, q, kind), grid(q)
    dist = np.abs(y - g[codes])
    assert (dist <= 1.0 / (q - 1) + 1e-12).all()
    for neighbour in (np.maximum(codes - 1, 0), np.minimum(codes + 1, q - 1)):
        assert (dist <= np.abs(y - g[neighbour]) + 1e-12).all()


@settings(max_examples=200, deadline=None)
@given(x=samples, q=qs, kind=kinds)
def test_decode_of_encode_is_within_half_a_step(
    x: np.ndarray, q: int, kind: str
) -> None:
    xhat = decode(encode(x, q, kind), q, kind)
    assert xhat.dtype == np.float32 and xhat.shape == x.shape
    assert (np.abs(xhat) <= 1.0).all()
    err = np.abs(to_domain(x, q, kind) - to_domain(xhat, q, kind))
    assert (err <= 1.0 / (q - 1) + 1e-6).all()


@pytest.mark.parametrize("kind", KINDS)
def test_decode_is_increasing_and_spans_minus_one_to_one(kind: str) -> None:
    values = decode(np.arange(256), 256, kind)
    assert (np.diff(values) > 0).all()
    assert values[0] == -1.0 and values[-1] == 1.0


def test_mulaw_gives_quiet_samples_more_levels_than_linear() -> None:
    quiet = np.linspace(-0.05, 0.05, 1001)
    assert len(np.unique(mulaw_encode(quiet, 256))) > 4 * len(
        np.unique(linear_encode(quiet, 256))
    )


@pytest.mark.parametrize("kind", KINDS)
def test_samples_outside_range_are_clipped_to_the_end_codes(kind: str) -> None:
    np.testing.assert_array_equal(
        encode(np.array([-7.0, -1.0, 1.0, 3.0]), 256, kind), [0, 0, 255, 255]
    )


@settings(max_examples=50, deadline=None)
@given(x=samples, q=qs)
def test_torch_and_numpy_give_identical_results(x: np.ndarray, q: int) -> None:
    for enc, dec in ((mulaw_encode, mulaw_decode), (linear_encode, linear_decode)):
        codes = enc(torch.from_numpy(x), q)
        assert isinstance(codes, torch.Tensor) and codes.dtype == torch.int64
        np.testing.assert_array_equal(codes.numpy(), enc(x, q))
        values = dec(codes, q)
        assert isinstance(values, torch.Tensor) and values.dtype == torch.float32
        np.testing.assert_array_equal(values.numpy(), dec(codes.numpy(), q))


def test_float32_torch_input_keeps_its_shape() -> None:
    x = torch.rand(2, 3, 5) * 2 - 1
    codes = mulaw_encode(x, 256)
    assert codes.shape == (2, 3, 5)
    assert (mulaw_decode(codes, 256) - x).abs().max() < 0.05


@pytest.mark.parametrize("q", [0, 1, 65537, -3, 2.0, True, "256", None])
@pytest.mark.parametrize("fn", [mulaw_encode, linear_encode])
def test_bad_q_raises_value_error_naming_q(q: object, fn) -> None:
    with pytest.raises(ValueError, match="q must be"):
        fn(np.zeros(3), q)


@pytest.mark.parametrize("q", [1, 65537])
def test_bad_q_in_decode_raises_value_error_naming_q(q: int) -> None:
    with pytest.raises(ValueError, match="q must be"):
        mulaw_decode(np.zeros(3, dtype=np.int64), q)


@pytest.mark.parametrize("bad", [-1, 256])
@pytest.mark.parametrize("fn", [mulaw_decode, linear_decode])
def test_out_of_range_codes_raise_value_error(bad: int, fn) -> None:
    with pytest.raises(ValueError, match="codes must lie in"):
        fn(np.array([0, bad]), 256)
    with pytest.raises(ValueError, match="codes must lie in"):
        fn(torch.tensor([0, bad]), 256)


@pytest.mark.parametrize(
    "codes", [np.array([0.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([True])]
)
def test_non_integer_codes_raise_value_error(codes) -> None:
    with pytest.raises(ValueError, match="integer"):
        mulaw_decode(codes, 256)


def test_nan_samples_raise_value_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        mulaw_encode(np.array([0.0, np.nan]), 256)
    with pytest.raises(ValueError, match="NaN"):
        linear_encode(torch.tensor([np.nan]), 256)


def test_unknown_kind_raises_value_error_naming_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        encode(np.zeros(3), 256, "alaw")
    with pytest.raises(ValueError, match="kind"):
        decode(np.zeros(3, dtype=np.int64), 256, "alaw")
