"""The pieces the VRNN and SRNN share (core/models/latent_rnn.py), and helpers their tests use.

The distributions are checked against torch.distributions; the reverse LSTM's reach is checked
by gradients; bad configs must raise ConfigError naming the field.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.errors import ConfigError
from core.models import build_model, config_from_dict
from core.models.latent_rnn import (
    Emission,
    LatentRNNConfig,
    normal_log_prob,
    normal_params,
    propose,
    reverse_lstm,
    reverse_padded,
)
from core.models.srnn import SRNN, SRNNConfig
from core.models.vrnn import VRNN, VRNNConfig


def masked_elbo(model, x: torch.Tensor, lengths: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """One-particle ELBO per sequence: sum over t < length of propose_and_weight's log weight -> (B,).

    eps (B, T, L) fixes the proposal's noise; else it is drawn from the global RNG.
    """
    context = model.encode(x, lengths)
    state = model.zero_state(x.shape[0])
    total = x.new_zeros(x.shape[0])
    for t in range(x.shape[1]):
        state, log_w = model.propose_and_weight(state, context, t, None if eps is None else eps[:, t])
        total = total + torch.where(t < lengths, log_w, torch.zeros_like(log_w))
    return total


def sparse_rolls(b: int, t: int, d: int = 88, seed: int = 0) -> torch.Tensor:
    """(B, T, D) random 0/1 frames with about 5% ones, like a pianoroll."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, d, generator=g) < 0.05).float()


def small_config(cls: type, **kw):
    """A config of `cls` (VRNNConfig or SRNNConfig) with latent_size 8: tests run in milliseconds."""
    kw.setdefault("latent_size", 8)
    return cls(**kw)


def test_normal_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, mu = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    sd = torch.rand(5, 7, generator=g) + 0.1
    expected = torch.distributions.Normal(mu, sd).log_prob(x).sum(-1)
    torch.testing.assert_close(normal_log_prob(x, mu, sd), expected)


def test_standard_deviation_is_softplus_of_raw_plus_half():
    raw = torch.tensor([[0.3, -1.0, 0.0, 2.0]])
    mu, sd = normal_params(raw)
    torch.testing.assert_close(mu, raw[:, :2])
    torch.testing.assert_close(sd, torch.log1p(torch.exp(raw[:, 2:] + 0.5)))


def test_proposal_is_offset_from_prior_mean_and_its_log_ratio_is_exact():
    g = torch.Generator().manual_seed(1)
    mu_p, raw_q, eps = torch.randn(6, 4, generator=g), torch.randn(6, 8, generator=g), torch.randn(6, 4, generator=g)
    sd_p = torch.rand(6, 4, generator=g) + 0.2
    z, log_ratio = propose(mu_p, sd_p, raw_q, eps)
    offset, sd_q = normal_params(raw_q)
    torch.testing.assert_close(z, mu_p + offset + sd_q * eps)
    p, q = torch.distributions.Normal(mu_p, sd_p), torch.distributions.Normal(mu_p + offset, sd_q)
    torch.testing.assert_close(log_ratio, (p.log_prob(z) - q.log_prob(z)).sum(-1))


@pytest.mark.parametrize("emission", ["bernoulli", "gaussian"])
def test_emission_log_prob_matches_torch_distributions(emission: str):
    mean = [0.1, 0.5, 0.0] if emission == "bernoulli" else []
    head = Emission(LatentRNNConfig(data_dim=3, latent_size=4, emission=emission, train_mean=mean))
    params = head(torch.randn(5, 4, generator=torch.Generator().manual_seed(2)))
    x = sparse_rolls(5, 1, 3, seed=3)[:, 0] if emission == "bernoulli" else torch.randn(5, 3)
    if emission == "bernoulli":
        dist = torch.distributions.Bernoulli(logits=params)
        # The logit bias is logit(mean), the mean clipped to [1e-4, 1 - 1e-4].
        torch.testing.assert_close(head.logit_bias, torch.logit(torch.tensor([0.1, 0.5, 1e-4])))
    else:
        mu, sd = normal_params(params)
        dist = torch.distributions.Normal(mu, sd)
    torch.testing.assert_close(head.log_prob(x, params), dist.log_prob(x).sum(-1))


def test_reverse_padded_reverses_within_each_length_and_is_an_involution():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_padded(x, torch.tensor([3, 5]))
    assert out[:, :, 0].tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]
    torch.testing.assert_close(reverse_padded(out, torch.tensor([3, 5])), x)


def test_reverse_lstm_output_at_t_depends_on_steps_t_to_length_only():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(1, 6, 3, requires_grad=True)
    out = reverse_lstm(lstm, x, torch.tensor([4]))
    out[0, 1].sum().backward()
    reached = x.grad[0].abs().sum(-1) > 0
    assert reached.tolist() == [False, True, True, True, False, False]


@pytest.mark.parametrize(("field", "value"), [
    ("data_dim", 0), ("latent_size", -1), ("latent_size", 2.5), ("emission", "poisson"),
    ("proposal", "prior"), ("train_mean", [0.5] * 3), ("train_mean", [1.5] * 88), ("train_mean", "mean"),
    ("signal_std", 0.0), ("sample_rate", -1),
])
@pytest.mark.parametrize("cls", [VRNNConfig, SRNNConfig])
def test_bad_config_raises_config_error_naming_the_field(cls: type, field: str, value: object):
    with pytest.raises(ConfigError, match=field):
        cls(**{field: value})


@pytest.mark.parametrize(("name", "cls"), [("vrnn", VRNN), ("srnn", SRNN)])
def test_config_dict_builds_the_registered_family(name: str, cls: type):
    config = config_from_dict({"model_type": name, "latent_size": 8, "train_mean": [0.25] * 88})
    model = build_model(config)
    assert type(model) is cls and model.config.train_mean == [0.25] * 88
    assert math.isclose(float(model.emission.logit_bias[0]), math.log(0.25 / 0.75), rel_tol=1e-6)
