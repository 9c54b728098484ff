"""The fused particle filter (core/inference/fused_filter.py, filter_kernel.c) of the VRNN and the SRNN against
the PyTorch engine.

- Without resampling (ELBO, IWAE) it draws the same proposal noise as the engine's loop, so under one seed
  both give the same bound and the same gradient for every parameter (Bernoulli and Gaussian emissions,
  filtering and smoothing proposals, sequences of unequal lengths).
- With resampling (FIVO) its draws differ from torch.multinomial's, so a PyTorch replay of its record (its
  noise, its resampling steps, its ancestors) must give its bound and gradients, its decisions must be the
  ESS criterion's on its own weights, and its ancestors the inverse CDF of its uniforms.
- The engine's identities hold in it: FIVO that never resamples is IWAE, FIVO with one particle the ELBO.
"""

from __future__ import annotations

import math

import pytest
import torch

from core.inference import fused_filter
from core.inference.bounds import estimate
from core.inference.resampling import ancestor_rows, ess_criterion
from core.inference.smc import run_smc
from core.models.sequential import tile
from core.models.srnn import SRNN, SRNNConfig
from core.models.vrnn import VRNN, VRNNConfig

pytestmark = pytest.mark.skipif(not fused_filter.buildable(fused_filter._library),
                                reason="no C compiler or AVX2/FMA here: the fused filter falls back to PyTorch")

B, T, N = 3, 9, 4
LENGTHS = torch.tensor([9, 5, 7])


FAMILIES = pytest.mark.parametrize("family", ["vrnn", "srnn"])
CLASSES = {"vrnn": (VRNN, VRNNConfig), "srnn": (SRNN, SRNNConfig)}


def model_and_data(emission: str = "bernoulli", proposal: str = "filtering", latent: int = 16, family: str = "vrnn"):
    """A small VRNN or SRNN (seed 0) and a batch x (B, T, D) for it."""
    torch.manual_seed(0)
    d = 12 if emission == "bernoulli" else 20
    mean = [0.3] * d if emission == "bernoulli" else []
    cls, config = CLASSES[family]
    model = cls(config(data_dim=d, latent_size=latent, emission=emission, proposal=proposal, train_mean=mean))
    x = (torch.rand(B, T, d) < 0.3).float() if emission == "bernoulli" else torch.randn(B, T, d)
    return model, x


def bound_and_grads(model: VRNN | SRNN, compute) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(log p-hat (B,), every parameter's gradient of its sum) of compute() -> log p-hat."""
    model.zero_grad()
    log_p_hat = compute()
    log_p_hat.sum().backward()
    return log_p_hat.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


def assert_same(a: tuple, b: tuple) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-3)
    for name, grad in a[1].items():
        scale = b[1][name].abs().max().item() + 1e-6
        assert (grad - b[1][name]).abs().max().item() <= 2e-4 * scale, name


@FAMILIES
@pytest.mark.parametrize(("emission", "proposal"), [("bernoulli", "filtering"), ("gaussian", "smoothing")])
@pytest.mark.parametrize("bound", ["elbo", "iwae"])
def test_without_resampling_the_fused_filter_equals_the_engine_loop_value_and_gradients(family, emission, proposal,
                                                                                        bound):
    model, x = model_and_data(emission, proposal, family=family)
    assert fused_filter.usable(model, x, N, None, relaxed=False)

    def run(fused: bool):
        torch.manual_seed(7)
        return estimate(model, x, LENGTHS, bound, N, generator=torch.Generator(), fused=fused).log_p_hat

    assert_same(bound_and_grads(model, lambda: run(True)), bound_and_grads(model, lambda: run(False)))


def replay(model: VRNN | SRNN, x: torch.Tensor, lengths: torch.Tensor, n: int, record: fused_filter.FusedResult):
    """FIVO's estimator in PyTorch through the model's own steps, fed the fused run's noise and resampling."""
    b = x.shape[0]
    context, state = tile(model.encode(x, lengths), n), model.zero_state(n * b)
    log_w, log_p_hat = torch.zeros(n, b), torch.zeros(b)
    for t in range(int(lengths.max())):
        state, increment = model.propose_and_weight(state, context, t, eps=record.eps[t])
        log_w = log_w + torch.where(t < lengths, increment.view(n, b), torch.zeros(()))
        resampled = record.resampled[t]
        log_p_hat = log_p_hat + torch.where(resampled, torch.logsumexp(log_w, 0) - math.log(n), torch.zeros(()))
        state = {k: v.index_select(0, ancestor_rows(record.ancestors[t])) for k, v in state.items()}
        log_w = torch.where(resampled, torch.zeros(()), log_w)
    return log_p_hat + torch.logsumexp(log_w, 0) - math.log(n)


@FAMILIES
@pytest.mark.parametrize("resampling", ["multinomial", "systematic"])
@pytest.mark.parametrize("emission", ["bernoulli", "gaussian"])
def test_fivo_equals_a_pytorch_replay_of_its_noise_and_ancestors(family, resampling, emission):
    model, x = model_and_data(emission, family=family)
    found = {}

    def fused():
        found["run"] = fused_filter.run(model, x, LENGTHS, N, 0.9, resampling, torch.Generator().manual_seed(3))
        return found["run"].log_p_hat

    ours = bound_and_grads(model, fused)
    record = found["run"]
    assert record.resampled.any() and not record.resampled.all()  # the replay exercises both branches
    assert_same(ours, bound_and_grads(model, lambda: replay(model, x, LENGTHS, N, record)))


@pytest.mark.parametrize("resampling", ["multinomial", "systematic"])
def test_fused_decisions_follow_the_ess_criterion_and_ancestors_the_inverse_cdf_of_the_uniforms(resampling):
    model, x = model_and_data()
    with torch.no_grad():
        record = fused_filter.run(model, x, LENGTHS, N, 0.9, resampling, torch.Generator().manual_seed(5))
    criterion, identity = ess_criterion(0.9), torch.arange(N).unsqueeze(1).expand(N, B)
    for t in range(T):
        active = t < LENGTHS
        assert torch.equal(record.resampled[t], criterion(record.log_weights[t], t) & active), t
        cdf = torch.softmax(record.log_weights[t].double(), 0).T.cumsum(1)  # (B, N)
        cdf = cdf / cdf[:, -1:]
        u = record.uniforms[t].double()
        points = u if resampling == "multinomial" else (torch.arange(N) + u.unsqueeze(1)) / N  # (B, N)
        drawn = torch.searchsorted(cdf, points, right=True).T
        assert torch.equal(record.ancestors[t], torch.where(record.resampled[t], drawn, identity)), t


def test_fused_identities_fivo_without_resampling_is_iwae_and_one_particle_is_the_elbo():
    model, x = model_and_data()
    with torch.no_grad():
        def bound(name, threshold=0.5, particles=N):
            torch.manual_seed(11)
            return estimate(model, x, LENGTHS, name, particles, threshold=threshold, generator=torch.Generator())
        assert torch.equal(bound("fivo", threshold=0.0).log_p_hat, bound("iwae").log_p_hat)
        assert torch.equal(bound("fivo", particles=1).log_p_hat, bound("elbo").log_p_hat)


def test_fused_trace_has_the_engines_shapes_and_identity_ancestors_where_it_did_not_resample():
    model, x = model_and_data()
    with torch.no_grad():
        trace = run_smc(model, x, LENGTHS, particles=N, criterion=ess_criterion(0.9), trace=True).trace
    assert trace.log_weights.shape == (T, B, N) and trace.ess.shape == (T, B) and trace.resampled.shape == (T, B)
    kept = ~trace.resampled
    assert torch.equal(trace.ancestors[kept], torch.arange(N).expand(int(kept.sum()), N))
    assert bool(((trace.ess >= 1 - 1e-4) & (trace.ess <= N + 1e-4)).all())
    assert not trace.resampled[7:, 1].any()  # never past a sequence's end (length 5)


def test_the_fused_filter_is_used_only_where_it_computes_the_same_thing():
    model, x = model_and_data()
    assert fused_filter.usable(model, x, N, ess_criterion(0.5), relaxed=False)
    assert not fused_filter.usable(model, x, N, ess_criterion(0.5), relaxed=True)
    assert not fused_filter.usable(model, x, N, lambda w, t: torch.ones(w.shape[1], dtype=torch.bool), relaxed=False)
    assert not fused_filter.usable(model, x.double(), N, None, relaxed=False)
    small, x8 = model_and_data(latent=8)
    assert not fused_filter.usable(small, x8, N, None, relaxed=False)
    rows = fused_filter.MAX_ROWS
    assert fused_filter.usable(model, x, rows // B, None, relaxed=False)
    assert not fused_filter.usable(model, x, rows // B + 1, None, relaxed=False)  # the loop is faster there


@FAMILIES
def test_the_fused_arithmetic_holds_far_from_zero_and_on_one_step_one_particle_sequences(family):
    model, x = model_and_data("gaussian", family=family)
    with torch.no_grad():  # every weight x1.3 (x1.5 overflows both paths to NaN): pre-activations far out in the
        for p in model.parameters():  # kernel's softplus, log and tanh, emission deviations tiny, bounds to -1e14
            p.mul_(1.3)

    def run(fused: bool, x: torch.Tensor, lengths: torch.Tensor, particles: int):
        torch.manual_seed(3)
        return estimate(model, x, lengths, "iwae", particles, generator=torch.Generator(), fused=fused).log_p_hat

    for data, lengths, particles in ((x, LENGTHS, N), (x[:1, :1], torch.tensor([1]), 1)):
        ours, loop = run(True, data, lengths, particles), run(False, data, lengths, particles)
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, loop, rtol=1e-4, atol=1e-2)


@FAMILIES
def test_without_gradients_the_fused_filter_reuses_one_steps_scratch_and_gives_the_same_bound(family):
    model, x = model_and_data(family=family)

    def fivo():
        return fused_filter.run(model, x, LENGTHS, N, 0.9, "multinomial", torch.Generator().manual_seed(2))

    torch.manual_seed(4)
    training = fivo()
    torch.manual_seed(4)
    with torch.no_grad():
        scoring = fivo()
    assert training.log_p_hat.requires_grad and not scoring.log_p_hat.requires_grad
    # Not bit for bit: under no_grad PyTorch's own LSTM (the SRNN's data LSTM, in its inputs) may take another kernel.
    torch.testing.assert_close(training.log_p_hat.detach(), scoring.log_p_hat, rtol=1e-5, atol=1e-4)
    assert torch.equal(training.ancestors, scoring.ancestors)
