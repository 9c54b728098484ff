"""The fused kernel's bfloat16 and int8 paths: close to the float32 cached step at every step,
picked only where the CPU runs them, and what they cost in teacher-forced NLL."""

import copy
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from core import sample
from core.data.batch import Batch
from core.generation import default_method, make_stepper
from core.generation.fused import available, bf16_engine, precisions
from core.generation.fused_pack import bf16_bits, int8_columns
from core.precision_cost import DEFAULT_MAX_CHANGE, teacher_forced_bits
from tests.test_wavenet import CACHED_CASES, conditioning, small_model

CPU_FLAGS = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), []) if Path("/proc/cpuinfo").exists() else []
AVX512 = all(f in CPU_FLAGS for f in ("avx512f", "avx512bw", "avx512vl"))
AMX = AVX512 and all(f in CPU_FLAGS for f in ("avx512_bf16", "amx_bf16", "amx_tile"))
LINUX_RELEASE = tuple(int(n) for n in os.uname().release.split("-")[0].split(".")[:2])
# Largest |logit - float32 cached logit| allowed at any step of the small test models, whose logits
# span a few units: float32 sums the same products in another order; bfloat16 keeps 8 bits of
# every weight and product input (relative error 2^-9); int8 keeps 7 bits of each weight column
# and 8 bits of each input vector's range. Measured: up to 0.003 (bf16), 0.004 (int8).
TOLERANCE = {"fused": 1e-4, "fused-bf16": 0.01, "fused-int8": 0.02}
PRECISION = {"fused": "fp32", "fused-bf16": "bf16", "fused-int8": "int8"}


def needs(method: str):
    return pytest.mark.skipif(PRECISION[method] not in precisions(),
                              reason=f"this CPU does not run the fused kernel's {PRECISION[method]} path")


def max_step_error(model, method: str, batch: int, prime_len: int) -> float:
    """The largest |logit difference| from the float32 cached stepper over a random sequence twice the
    receptive field (primed with prime_len of its tokens), at every step."""
    length = 2 * model.receptive_field + 5
    x = torch.randint(0, model.config.quantization_levels, (batch, length))
    cond = conditioning(model, batch, length)
    cached, other = make_stepper("cached", model, batch, cond), make_stepper(method, model, batch, cond)
    prev, worst = None, 0.0
    with torch.no_grad():
        if prime_len:
            worst = (other.prime(x[:, :prime_len]) - cached.prime(x[:, :prime_len])).abs().max().item()
            prev = x[:, prime_len - 1]
        for t in range(prime_len, length):
            worst = max(worst, (cached.step(prev) - other.step(prev)).abs().max().item())
            prev = x[:, t]
    return worst


@pytest.mark.parametrize("method", [pytest.param(m, marks=needs(m)) for m in TOLERANCE])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("cfg", [CACHED_CASES[1], CACHED_CASES[2], CACHED_CASES[7],
                                 dict(residual_channels=5, dilation_channels=7, skip_channels=9, head_channels=3,
                                      quantization_levels=11, kernel_size=3)])
def test_each_precision_agrees_with_the_float32_cached_step_within_its_tolerance(cfg, batch, method):
    err = max_step_error(small_model(**cfg), method, batch, prime_len=9)
    assert err < TOLERANCE[method], f"{method}: logits differ by {err}"
    if method != "fused":
        assert err > 1e-5, f"{method} gave float32 logits: the reduced-precision products did not run"


def to_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.bfloat16().float()


def fake_uint8(v: torch.Tensor) -> torch.Tensor:
    """(B, N, T): each vector v[b, :, t] rounded to 256 even steps of its own [min, max], as the kernel does."""
    lo, hi = v.amin(1, keepdim=True), v.amax(1, keepdim=True)
    step = torch.where(hi > lo, (hi - lo) / 255, torch.ones_like(hi))
    return lo + step * torch.round((v - lo) * (1 / step))


def int8_conv(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) as the int8 kernel computes it: x (B, C, T + (K-1) d), already padded by the layer, seen
    per output step as one vector of all K taps, quantised; weights rounded per output channel."""
    k, d = conv.kernel_size[0], conv.dilation[0]
    t = x.shape[2] - (k - 1) * d
    taps = torch.cat([x[:, :, j * d : j * d + t] for j in range(k)], 1)  # (B, K C, T): tap j is weight[:, :, j]
    w = conv.weight.permute(0, 2, 1).reshape(conv.weight.shape[0], -1)  # (O, K C)
    q, scale = int8_columns(w.t().numpy())
    return torch.einsum("ok,bkt->bot", torch.from_numpy(q * scale).t(), fake_uint8(taps)) + conv.bias[:, None]


def with_kernel_rounding(model, method: str):
    """A copy of the model whose products round as the kernel's `method` does: every conv of the layers and
    the head (not the input table, not the conditioning) takes bfloat16 weights and inputs, or int8 ones."""
    model = copy.deepcopy(model)
    convs = [c for layer in model.layers for c in (layer.conv, layer.out)]
    convs += [c for c in model.head if isinstance(c, torch.nn.Conv1d)]
    with torch.no_grad():
        for conv in convs:
            if method == "fused-bf16":
                conv.weight.copy_(to_bf16(conv.weight))
                conv.register_forward_pre_hook(lambda module, args: (to_bf16(args[0]),))
            else:
                conv.forward = types.MethodType(int8_conv, conv)
    return model


def engines(method: str) -> list:
    """(method, engine) cases: bf16 through each engine this CPU has, "avx512" forced with STUDIO_FUSED_ISA."""
    if method != "fused-bf16":
        return [pytest.param(method, None, marks=needs(method))]
    return [pytest.param(method, None, marks=needs(method), id=f"{method}-default"),
            pytest.param(method, "avx512", marks=needs(method), id=f"{method}-avx512")]


@pytest.mark.parametrize("method, engine", [*engines("fused-bf16"), *engines("fused-int8")])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("cfg", [dict(kernel_size=3), dict(kernel_size=2, n_classes=2, local_channels=2, local_hop=1)])
def test_each_reduced_precision_equals_pytorch_with_the_same_rounding_at_every_step(cfg, batch, method, engine,
                                                                                  monkeypatch):
    """Tight: the kernel's logits are those of the model with the kernel's rounding (channel counts are
    multiples of 16, so the kernel's vectors have no padding); a layout or scale mistake would show here.
    The two sum in different orders, so an input within float32 noise of a rounding boundary now and
    then rounds the other way, moving later logits by up to about 1e-3: most steps agree to 1e-5."""
    if engine:
        monkeypatch.setenv("STUDIO_FUSED_ISA", engine)
    model = small_model(residual_channels=16, dilation_channels=16, skip_channels=32, head_channels=16, **cfg)
    length = 2 * model.receptive_field + 5
    x = torch.randint(0, 16, (batch, length))
    cond = conditioning(model, batch, length)
    stepper, prev, errors = make_stepper(method, model, batch, cond), None, []
    with torch.no_grad():
        expected = with_kernel_rounding(model, method)(x, cond)  # (B, Q, T)
        for t in range(length):
            errors.append((stepper.step(prev) - expected[:, :, t]).abs().max().item())
            prev = x[:, t]
    errors = np.array(errors)
    assert errors.max() < 2e-3, f"step {errors.argmax()}: {method} logits differ from the emulation by {errors.max()}"
    assert np.mean(errors < 1e-5) > 0.9, f"{method}: only {np.mean(errors < 1e-5):.0%} of steps agree to 1e-5"


@pytest.mark.parametrize("method", [pytest.param(m, marks=needs(m)) for m in ("fused-bf16", "fused-int8")])
def test_batch_one_split_over_two_threads_gives_the_same_reduced_precision_logits(method):
    model = small_model(**CACHED_CASES[7])
    cond = conditioning(model, 1, 200)
    cls = type(make_stepper(method, model, 1, cond))
    one, two = cls(model, 1, cond, seed=3, threads=1), cls(model, 1, cond, seed=3, threads=2)
    prev = None
    for _ in range(20):
        a, b = one.step(prev), two.step(prev)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        prev = a.argmax(1)


@pytest.mark.skipif(not available(), reason="the fused kernel cannot be built here")
def test_the_kernel_offers_exactly_the_precisions_the_cpu_flags_allow():
    expected = ("fp32", *(("bf16",) if AVX512 and "avx512_bf16" in CPU_FLAGS else ()),
                *(("int8",) if AVX512 and "avx512_vnni" in CPU_FLAGS else ()))
    assert precisions() == expected
    model = small_model()
    assert default_method(model) == ("fused-bf16" if "bf16" in expected else "fused")


@pytest.mark.skipif(not available(), reason="the fused kernel cannot be built here")
def test_bf16_products_of_four_rows_or_more_run_on_amx_tiles_exactly_where_the_cpu_and_linux_allow(monkeypatch):
    amx = AMX and LINUX_RELEASE >= (5, 16)  # Linux 5.16 lets a process ask for the tile registers
    assert bf16_engine() == ("amx" if amx else "avx512" if "bf16" in precisions() else None)
    monkeypatch.setenv("STUDIO_FUSED_ISA", "avx512")
    assert bf16_engine() == ("avx512" if "bf16" in precisions() else None)


@pytest.mark.skipif(bf16_engine() != "amx", reason="this CPU (or its kernel) gives no AMX tiles")
@pytest.mark.parametrize("batch", [4, 16, 21])  # a whole tile block, and 16 + a block of 5
@pytest.mark.parametrize("channels", [16, 32])  # k = 2 x 16 = 32 inputs per tile product, and 16 left over
def test_amx_tiles_and_vdpbf16ps_give_the_same_bf16_logits_up_to_summation_order(batch, channels, monkeypatch):
    model = small_model(residual_channels=channels, dilation_channels=channels, skip_channels=2 * channels,
                        head_channels=channels + 16)
    cond = conditioning(model, batch, 60)
    tiles = make_stepper("fused-bf16", model, batch, cond)
    monkeypatch.setenv("STUDIO_FUSED_ISA", "avx512")
    vectors = make_stepper("fused-bf16", model, batch, cond)
    prev = None
    with torch.no_grad():
        for _ in range(60):
            a, b = tiles.step(prev), vectors.step(prev)
            torch.testing.assert_close(a, b, atol=2e-3, rtol=0)
            prev = a.argmax(1)


@pytest.mark.skipif(not available(), reason="the fused kernel cannot be built here")
def test_on_an_avx2_only_cpu_auto_takes_float32_and_reduced_precision_is_refused(monkeypatch):
    monkeypatch.setenv("STUDIO_FUSED_ISA", "avx2")
    model = small_model()
    assert precisions() == ("fp32",)
    assert default_method(model) == "fused"
    for method, need in (("fused-bf16", "AVX-512 BF16"), ("fused-int8", "AVX-512 VNNI")):
        with pytest.raises(ValueError, match=need):
            make_stepper(method, model, 1)


@pytest.mark.parametrize("known, expected", [
    ("FUSED_NO_AVX512", "True fp32 fused None"),  # gcc < 9: no AVX-512 BF16/VNNI targets
    ("FUSED_NO_AMX", "True {precisions} {default} {vectors}"),  # gcc 9-10: AVX-512 BF16 but no AMX
])
def test_a_compiler_without_the_newest_targets_builds_the_kernel_without_them(tmp_path, known, expected):
    """A `cc` that rejects a target attribute gets the build that leaves those paths out, and the rest still run."""
    cc = tmp_path / "old-cc"
    cc.write_text(f'#!/bin/sh\ncase "$*" in *{known}*|*FUSED_NO_AVX512*) exec cc "$@";; esac\n'
                  'echo "error: attribute(target(...)) is unknown" >&2; exit 1\n')
    cc.chmod(0o755)
    code = ("from core.generation.fused import available, bf16_engine, precisions;"
            "from core.generation import default_method; from tests.test_wavenet import small_model;"
            "print(available(), ','.join(precisions()), default_method(small_model()), bf16_engine())")
    env = {**os.environ, "STUDIO_CACHE": str(tmp_path / "cache"), "CC": str(cc)}
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    here = precisions()
    assert done.stdout.split() == expected.format(
        precisions=",".join(here), default="fused-bf16" if "bf16" in here else "fused",
        vectors="avx512" if "bf16" in here else None).split()


def test_bf16_bits_round_to_nearest_even_as_torch_does():
    x = np.concatenate([np.random.default_rng(0).normal(0, 10, 10000),
                        [0.0, -0.0, 1.0, 1.00390625, 1.01171875, -1.00390625, 3.4e38, 1e-40]]).astype(np.float32)
    ours = bf16_bits(x).view(np.int16)
    assert np.array_equal(ours, torch.from_numpy(x).bfloat16().view(torch.int16).numpy())


def test_int8_columns_scale_each_column_to_its_own_largest_weight():
    w = np.array([[0.5, -2.0, 0.0], [-0.25, 1.0, 0.0]], np.float32)
    q, scale = int8_columns(w)
    assert q.dtype == np.int8 and np.array_equal(np.abs(q).max(0), [127, 127, 0])
    np.testing.assert_allclose(q * scale, w, atol=scale.max() / 2)
    assert scale[2] == 1, "an all-zero (padding) column keeps a harmless scale"


def small_batches(model, n: int, length: int, score_from: int) -> list[Batch]:
    torch.manual_seed(1)
    out = []
    for _ in range(n):
        x = torch.randint(0, model.config.quantization_levels, (3, length))
        out.append(Batch(x, conditioning(model, 3, length), score_from=score_from))
    return out


@pytest.mark.skipif(not available(), reason="the fused kernel cannot be built here")
def test_teacher_forcing_through_the_float32_kernel_gives_the_pytorch_nll():
    model = small_model(**CACHED_CASES[7])
    bits = teacher_forced_bits(model, small_batches(model, 2, 300, 20), ["fused"])
    assert bits["tokens"] == 2 * 3 * 280
    assert abs(bits["fused"] - bits["pytorch"]) < 1e-5


@pytest.mark.parametrize("method", [pytest.param(m, marks=needs(m)) for m in ("fused-bf16", "fused-int8")])
def test_reduced_precision_moves_a_small_model_nll_by_less_than_the_default_rule(method):
    """The bench/precision.py measurement, on a small model: bf16 and int8 both stay within 0.01
    bits per sample here (on the bundled audio models int8 does not: see docs/internals.md)."""
    model = small_model(**CACHED_CASES[7])
    bits = teacher_forced_bits(model, small_batches(model, 2, 300, 20), ["fused", method])
    change = bits[method] - bits["fused"]
    assert 0 < abs(change) < DEFAULT_MAX_CHANGE, f"{method} moved the NLL by {change} bits"


@pytest.mark.skipif(not available(), reason="the fused kernel cannot be built here")
def test_the_sample_cli_refuses_a_precision_the_cpu_lacks_saying_what_to_use(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("STUDIO_FUSED_ISA", "avx2")
    checkpoint = Path(__file__).resolve().parents[1] / "checkpoints" / "tones-wavenet"
    code = sample.main(["--checkpoint", str(checkpoint), "--method", "fused-bf16", "--out", str(tmp_path),
                        "--seconds", "0.01", "--no-progress"])
    assert code == 2
    assert "AVX-512 BF16; use method 'fused'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing is written"
