"""The pieces the VRNN and SRNN share (core/models/latent_rnn.py), and helpers their tests use.

The distributions are checked against torch.distributions; the reverse LSTM's reach is checked
by gradients; bad configs must raise ConfigError naming the field.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.data.pianorolls import independent_bernoulli_ll, load_pianorolls, train_mean
from core.data.sequences import pad_sequences
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
from core.models.sequential import tile
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


# Checks run by tests/test_vrnn.py and tests/test_srnn.py on each family (cls: VRNN or SRNN).


def check_particle_folded_rows_are_independent_particles(cls: type, config_cls: type, proposal: str) -> None:
    """On a batch tiled N times (row n * B + b = particle n of sequence b), every row's state and log weight
    equal those of sequence b run alone with that row's noise: rows never mix and shapes are (N * B, ...)."""
    torch.manual_seed(0)
    model = cls(small_config(config_cls, proposal=proposal))
    n, b, t_len = 3, 2, 5
    x, lengths = sparse_rolls(b, t_len), torch.tensor([t_len, 3])
    context = model.encode(x, lengths)
    tiled = tile(context, n)
    eps = torch.randn(t_len, n * b, 8)
    state = model.zero_state(n * b)
    weights = []
    for t in range(t_len):
        state, log_w = model.propose_and_weight(state, tiled, t, eps[t])
        assert log_w.shape == (n * b,) and torch.isfinite(log_w).all()
        assert all(v.shape[0] == n * b for v in state.values()) and state["z"].shape == (n * b, 8)
        weights.append(log_w)
    for row in (0, 3, 5):
        seq = row % b
        alone = model.encode(x[seq:seq + 1], lengths[seq:seq + 1])
        single = model.zero_state(1)
        for t in range(t_len):
            single, log_w = model.propose_and_weight(single, alone, t, eps[t, row:row + 1])
            torch.testing.assert_close(log_w[0], weights[t][row], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(single["z"][0], state["z"][row], rtol=1e-5, atol=1e-5)


def check_same_seed_same_bound(cls: type, config_cls: type) -> None:
    """Building and scoring under one seed twice gives the same ELBO; another seed gives another."""
    x, lengths = sparse_rolls(2, 6), torch.tensor([6, 4])

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return masked_elbo(cls(small_config(config_cls)), x, lengths)

    torch.testing.assert_close(run(3), run(3), rtol=0, atol=0)
    assert not torch.allclose(run(3), run(4))


def check_gradients_reach_every_parameter(cls: type, config_cls: type, proposal: str) -> None:
    """The ELBO's gradient is non-zero for every parameter tensor."""
    torch.manual_seed(0)
    model = cls(small_config(config_cls, proposal=proposal, train_mean=[0.05] * 88))
    x, lengths = sparse_rolls(3, 7, seed=1), torch.tensor([7, 5, 2])
    (-masked_elbo(model, x, lengths).sum()).backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reaches {dead}"


def check_future_reaches_weights_only_with_smoothing(cls: type, config_cls: type, proposal: str) -> None:
    """With fixed noise, changing frames t >= 4 leaves the log weights of steps < 4 unchanged under the filtering
    proposal, and changes them under the smoothing one (its reverse LSTM reads the future)."""
    torch.manual_seed(0)
    model = cls(small_config(config_cls, proposal=proposal))
    x, lengths = sparse_rolls(1, 8), torch.tensor([8])
    changed = x.clone()
    changed[:, 4:] = 1 - changed[:, 4:]
    eps = torch.randn(1, 8, 8)

    def weights(frames: torch.Tensor) -> torch.Tensor:
        context, state, out = model.encode(frames, lengths), model.zero_state(1), []
        for t in range(8):
            state, log_w = model.propose_and_weight(state, context, t, eps[:, t])
            out.append(log_w)
        return torch.cat(out)

    before, after = weights(x), weights(changed)
    same_past = torch.allclose(before[:4], after[:4], rtol=0, atol=1e-6)
    assert same_past == (proposal == "filtering")
    assert not torch.allclose(before[4:], after[4:])


def check_checkpoint_round_trip_keeps_the_bound(cls: type, config_cls: type, tmp_path) -> None:
    """save_checkpoint then load_checkpoint gives a model with the same config and the same ELBO for the same noise."""
    from core.checkpoints import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = cls(small_config(config_cls, proposal="smoothing", train_mean=[0.03] * 88))
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))
    assert type(loaded) is cls and loaded.config == model.config
    x, lengths = sparse_rolls(2, 5), torch.tensor([5, 3])
    eps = torch.randn(2, 5, 8)
    torch.testing.assert_close(masked_elbo(loaded, x, lengths, eps), masked_elbo(model, x, lengths, eps))


def check_continuations(cls: type, config_cls: type) -> None:
    """continue_sequences returns (N, B, steps, D) 0/1 frames, repeats under one generator seed, works without a
    prefix, and leaves the model unchanged."""
    from core.latent_generation import continue_sequences

    torch.manual_seed(0)
    model = cls(small_config(config_cls, train_mean=[0.05] * 88))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prefix = sparse_rolls(2, 6)
    out = continue_sequences(model, prefix, num_samples=3, steps=4, generator=torch.Generator().manual_seed(1))
    again = continue_sequences(model, prefix, num_samples=3, steps=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 2, 4, 88) and set(out.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out, again, rtol=0, atol=0)
    assert continue_sequences(model, prefix[:, :0], num_samples=2, steps=3).shape == (2, 2, 3, 88)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def check_gaussian_emission_on_speech_frames(cls: type, config_cls: type) -> None:
    """A Gaussian-emission model on standardised 200-sample speech frames gives a finite ELBO with gradients, and
    generates real-valued frames (N, B, steps, 200)."""
    import numpy as np

    from core.data.sequences import Collate
    from core.data.speech_frames import speech_frame_splits
    from core.latent_generation import continue_sequences

    rng = np.random.default_rng(0)
    signals = [np.sin(np.arange(n) * 0.05) * 3000 + rng.normal(0, 300, n) for n in (1000, 1450, 610)]
    data, mean, std = speech_frame_splits({"train": signals})
    batch = Collate()([data["train"][i] for i in range(3)])
    torch.manual_seed(0)
    model = cls(config_cls(data_dim=200, latent_size=8, emission="gaussian", signal_mean=mean, signal_std=std,
                           sample_rate=16000))
    elbo = masked_elbo(model, batch.targets, batch.lengths)
    assert torch.isfinite(elbo).all() and batch.lengths.tolist() == [5, 8, 4]
    (-elbo.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    out = continue_sequences(model, batch.targets[:, :2], num_samples=2, steps=3)
    assert out.shape == (2, 3, 3, 200) and len(out.unique()) > 100


def untrained_elbo_per_step_on_jsb_test(cls: type, config_cls: type, proposal: str) -> tuple[float, float]:
    """(one-particle ELBO in nats per timestep of a seed-0 untrained model on JSB test, the independent floor)."""
    rolls = load_pianorolls("jsb")
    mean = train_mean(rolls["train"])
    x, lengths = pad_sequences([torch.from_numpy(r) for r in rolls["test"]])
    torch.manual_seed(0)
    model = cls(config_cls(train_mean=mean.tolist(), proposal=proposal))
    with torch.no_grad():
        elbo = masked_elbo(model, x, lengths)
    return float(elbo.sum() / lengths.sum()), independent_bernoulli_ll(rolls["test"], mean)


def check_generation_runs_the_filters_backbone(cls: type, config_cls: type) -> None:
    """After filtering x_0..x_k, one prior_step fed centre(x_k) computes the same LSTM state h_{k+1} as the filter
    (VRNN: its next propose_and_weight; SRNN: the forward LSTM over the whole sequence in encode): the generator
    feeds the backbone the same inputs, x_{t-1} - mean and (VRNN) enc(z_{t-1})."""
    torch.manual_seed(0)
    model = cls(small_config(config_cls, train_mean=[0.1] * 88))
    x, lengths, k = sparse_rolls(2, 6), torch.tensor([6, 6]), 3
    context, state = model.encode(x, lengths), model.zero_state(2)
    for t in range(k + 1):
        state, _ = model.propose_and_weight(state, context, t)
    generated, _ = model.prior_step(model.start_sampling(state, x[:, : k + 1]), model.centre(x[:, k]))
    if cls is VRNN:
        expected, _ = model.propose_and_weight(state, context, k + 1)
        expected_h = expected["h"]
    else:
        expected_h = model.rnn(model.data_enc(model.inputs(x)))[0][:, k + 1]
    torch.testing.assert_close(generated["h"], expected_h)


def test_frames_of_another_size_than_data_dim_raise_config_error():
    model = VRNN(small_config(VRNNConfig))
    with pytest.raises(ConfigError, match="data_dim=88"):
        model.encode(torch.zeros(2, 5, 200), torch.tensor([5, 5]))
    with pytest.raises(ConfigError, match="lengths"):
        model.encode(torch.zeros(2, 5, 88), torch.tensor([5, 6]))
