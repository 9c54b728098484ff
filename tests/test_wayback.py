"""The wayback model: truncation measured by autograd, hand-unrolled references, carry, generation, learning."""

import copy
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.codecs import decode, encode
from core.data.segments import SegmentStreams
from core.data.tones import tones
from core.errors import ConfigError
from core.generation.recurrent import RecurrentStepper, continuations
from core.models import build_model, config_from_dict
from core.models.recurrent_cells import Cell
from core.models.wayback import Wayback, WaybackConfig
from core.training.config import from_dict
from core.training.tbptt import tbptt_objective

ROOT = Path(__file__).resolve().parent.parent


def tiny(seed: int = 0, dtype=torch.float32, **kw) -> Wayback:
    torch.manual_seed(seed)
    cfg = dict(sampling_frequency=8000, bit_depth=4, layout="wayback", cell="gru", layer_sizes=[6, 5, 4],
               periods=[1, 2, 2], boundaries=[4, 4, 4], io_sizes=[7])
    cfg.update(kw)
    return Wayback(WaybackConfig(**cfg)).to(dtype).eval()


def tokens(b: int, t: int, q: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, q, (b, t), generator=torch.Generator().manual_seed(seed))


GRADIENT_CASES = [
    dict(layout="wayback", periods=[1, 2, 2], boundaries=[4, 4, 4]),
    dict(layout="wayback", periods=[1, 3], boundaries=[6, 4], layer_sizes=[5, 4], carry=False),
    dict(layout="wayback", periods=[2, 2], boundaries=[2, 2], layer_sizes=[5, 4], vskip=True, cell="lstm"),
    dict(layout="wayback", periods=[1, 2, 2], boundaries=[2, 2, 2], carry=False, vskip=True, cell="rnn"),
    dict(layout="stack", periods=None, boundaries=[5, 3, 2], cell="lstm"),
    dict(layout="stack", periods=None, boundaries=[4, 4], layer_sizes=[5, 4], vskip=True, chunk_size=2),
]


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradient_reaches_each_layer_exactly_as_far_as_its_boundary(case):
    """Autograd: the loss at step t has a non-zero gradient w.r.t. exactly the layer updates the schedule
    reaches, so zero beyond each layer's boundary (in its own clock) and non-zero within it."""
    model = tiny(dtype=torch.float64, **case)
    c, sched = model.config, model.schedule
    steps = 2 * sched.segment_steps
    x = tokens(2, steps * c.chunk_size)
    trace = []
    logits, _ = model(x, trace=trace)
    for t in sorted({*range(0, steps, 3), sched.segment_steps - 1, steps - 1}):
        loss = logits[:, :, t * c.chunk_size : (t + 1) * c.chunk_size].logsumexp(1).sum()
        grads = torch.autograd.grad(loss, [h for _, _, h in trace], retain_graph=True, allow_unused=True)
        live = [sorted(s for (i, s, _), g in zip(trace, grads, strict=True)
                       if i == layer and g is not None and g.abs().sum() > 0) for layer in range(sched.depth)]
        assert live == sched.reach(t), f"loss at step {t}"
        for i in range(sched.depth):
            assert all(t - s < sched.spans[i] for s in live[i])
            if c.carry and (t + 1) % sched.segment_steps == 0:
                assert len(live[i]) == (sched.boundaries[i] if c.layout == "wayback" else sched.segment_steps)


def reference_logits(model: Wayback, x: torch.Tensor) -> torch.Tensor:
    """Hand-unrolled: the model's modules stepped by an explicit loop, stack bottom-up reading the layer below,
    wayback (all periods 1) top-down reading below and above. x (B, T) -> logits (B, Q, T)."""
    c = model.config
    b, t = x.shape
    n = c.chunk_size
    chunks = x.view(b, t // n, n)
    prev = torch.full((b, n), c.quantization_levels)
    states = [cell.zero_state(b, dtype=torch.float64) for cell in model.cells]
    out = []
    depth = len(states)
    for k in range(t // n):
        e = model.embed(prev, False)
        order = range(depth) if c.layout == "stack" else reversed(range(depth))
        for i in order:
            if c.layout == "stack":
                terms = ([e] if i == 0 else [states[i - 1][-1]])
            else:
                terms = ([e] if i == 0 else [states[i - 1][-1]]) + ([states[i + 1][-1]] if i + 1 < depth else [])
            states[i] = model.cells[i](terms, states[i], False)
        h = torch.cat([s[-1] for s in states], dim=1)
        out.append(model.head(model.output_net(h, False), chunks[:, k]))
        prev = chunks[:, k]
    return torch.cat(out, dim=1).transpose(1, 2)


@pytest.mark.parametrize("layout", ["stack", "wayback"])
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_all_periods_one_equals_the_hand_unrolled_reference(layout, chunk_size):
    model = tiny(dtype=torch.float64, layout=layout, periods=[1, 1, 1], boundaries=[3, 3, 3], cell="lstm",
                 chunk_size=chunk_size)
    x = tokens(2, 12 * chunk_size)
    torch.testing.assert_close(model(x)[0], reference_logits(model, x), rtol=0, atol=1e-10)


def test_carry_false_restarts_the_lower_layer_from_the_layer_above_each_cycle():
    model = tiny(dtype=torch.float64, periods=[1, 3], boundaries=[3, 2], layer_sizes=[5, 4], carry=False)
    x = tokens(2, 12)
    trace = []
    model(x, trace=trace)
    outputs = {(i, s): h for i, s, h in trace}
    inputs = torch.cat([torch.full((2, 1), 16), x[:, :-1]], dim=1)
    for s in range(12):
        e = model.embed(inputs[:, s : s + 1], False)
        h1 = outputs[(1, s - s % 3)]
        if s % 3 == 0:  # the cycle of layer 1 starts: layer 0 restarts from elu(map(h1))
            start = (F.elu(model.reinit[0]([h1], False)),)
        else:
            start = (outputs[(0, s - 1)],)
        expected = model.cells[0]([e, h1], start, False)[-1]
        torch.testing.assert_close(outputs[(0, s)], expected, rtol=0, atol=1e-12)
    carried = tiny(dtype=torch.float64, periods=[1, 3], boundaries=[3, 2], layer_sizes=[5, 4])
    assert carried.reinit is None and not torch.allclose(carried(x)[0], model(x)[0])


STEPPER_CASES = [
    dict(layout="wayback", cell="gru", chunk_size=1, use_bn=True),
    dict(layout="wayback", cell="lstm", chunk_size=3, carry=False, vskip=True),
    dict(layout="stack", periods=None, cell="rnn", chunk_size=2, activation="elu", use_bn=True),
    dict(layout="stack", periods=None, cell="lstm", chunk_size=1, io_sizes=[]),
]


@pytest.mark.parametrize("case", STEPPER_CASES)
def test_stepper_equals_the_full_forward_at_every_step(case):
    model = tiny(**case)
    x = tokens(3, 24 * model.config.chunk_size)
    with torch.no_grad():
        full, _ = model(x)
    stepper = RecurrentStepper(model, 3)
    steps = [stepper.step(None)] + [stepper.step(x[:, t - 1]) for t in range(1, x.shape[1])]
    torch.testing.assert_close(torch.stack(steps, dim=2), full, rtol=0, atol=1e-4)
    for p in (1, 5, 7):  # primed with logits, then stepped
        stepper = RecurrentStepper(model, 3)
        primed = stepper.prime(x[:, :p], logits=True)
        rest = [stepper.step(x[:, t - 1]) for t in range(p, x.shape[1])]
        torch.testing.assert_close(torch.cat([primed, torch.stack(rest, dim=2)], dim=2), full, rtol=0, atol=1e-4)


def test_stepper_leaves_the_model_unchanged_and_samples_reproducibly():
    model = tiny(use_bn=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    draws = []
    for _ in range(2):
        stepper = RecurrentStepper(model, 2, seed=3)
        stepper.prime(tokens(2, 5))
        draws.append(stepper.sample(20, temperature=1.0, top_k=5))
    assert torch.equal(draws[0], draws[1]) and draws[0].shape == (2, 20)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="temperature"):
        RecurrentStepper(model, 1).sample(3, temperature=-1)


def test_continuations_start_with_their_primer_and_follow_the_stepper():
    model = tiny(chunk_size=2)
    primers = [tokens(1, 7)[0], tokens(1, 12, seed=1)[0]]
    outs = continuations(model, primers, 9, temperature=0.8, seed=5)
    assert [len(o) for o in outs] == [16, 21]
    assert all(torch.equal(o[: len(p)], p) for o, p in zip(outs, primers, strict=True))
    stepper = RecurrentStepper(model, 1, seed=6)
    stepper.prime(primers[1].view(1, -1))
    assert torch.equal(outs[1][12:], stepper.sample(9, temperature=0.8)[0])


@pytest.mark.parametrize("layout", ["wayback", "stack"])
def test_checkpointed_nll_equals_cross_entropy_of_the_logits_in_value_gradient_and_running_statistics(layout):
    """Wayback.nll (the loss's path, recomputing each bottom-layer block in the backward) is the same function
    as cross-entropy over forward's logits, and updates the batch-norm running statistics once."""
    kw = dict(layout=layout, use_bn=True, vskip=True, chunk_size=2, boundaries=[2, 2, 2])
    kw.update(dict(periods=[1, 1, 2]) if layout == "wayback" else dict(periods=None))
    a = tiny(dtype=torch.float64, **kw).train()
    b = copy.deepcopy(a)
    x = tokens(3, 48)
    _, state = a(tokens(3, 48, seed=2))
    b.load_state_dict(a.state_dict())
    logits, after_a = a(x, state.detach())
    F.cross_entropy(logits, x, reduction="sum").backward()
    nll, hit, after_b = b.nll(x, state.detach(), checkpointed=True)
    nll.sum().backward()
    torch.testing.assert_close(nll, F.cross_entropy(logits, x, reduction="none"), rtol=0, atol=1e-10)
    assert torch.equal(hit, logits.argmax(dim=1) == x)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-8, atol=1e-10, msg=name)
    for (name, ba), bb in zip(a.named_buffers(), b.buffers(), strict=True):
        torch.testing.assert_close(ba, bb, rtol=0, atol=1e-12, msg=name)
    assert after_a.time == after_b.time
    torch.testing.assert_close(after_a.layers[0][-1], after_b.layers[0][-1], rtol=0, atol=1e-10)


def test_checkpointed_nll_keeps_no_activations_outside_the_recomputed_blocks():
    model = tiny(layout="wayback", use_bn=True, periods=[1, 1, 2], boundaries=[4, 4, 4]).train()

    def saved_bytes(t: int, checkpointed: bool) -> int:
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model.nll(tokens(4, t), None, checkpointed)
        return total

    plain, blocks = saved_bytes(64, False), saved_bytes(64, True)
    assert saved_bytes(128, False) > 1.9 * plain  # the plain graph grows with the segment
    assert blocks < plain / 100


def test_two_segments_with_the_carried_state_equal_one_forward_over_both():
    """The carried state holds the previous chunk: the reference's one-element overlap, without re-sending it."""
    model = tiny(chunk_size=2)
    x = tokens(2, 64)
    whole, _ = model(x)
    first, state = model(x[:, :32])
    second, _ = model(x[:, 32:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=2), whole, rtol=0, atol=1e-5)


def test_tbptt_objective_restarts_reset_rows_and_masks_padding():
    model = tiny()
    x = tokens(2, 16)
    _, state = model(tokens(2, 16, seed=1))
    out = tbptt_objective(model, x, state, lengths=torch.tensor([16, 10]), reset=torch.tensor([False, True]))
    with torch.no_grad():
        fresh = F.cross_entropy(model(x[1:])[0], x[1:], reduction="none")[0, :10].sum()
        carried = F.cross_entropy(model(x[:1], state_row(state, 0))[0], x[:1], reduction="none").sum()
    assert out.count == 26
    assert out.sums["nll_nats"] == pytest.approx(float(fresh + carried), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.sums["nll_nats"] / 26, rel=1e-6)
    assert not out.state.layers[0][0].requires_grad


def state_row(state, row):
    """Row `row` of a RecurrentState, as a batch of one."""
    return dataclasses.replace(state, layers=[tuple(t[row : row + 1] for t in s) for s in state.layers],
                               last=state.last[row : row + 1])


def test_a_tiny_model_learns_the_500_hz_tone():
    """About 5 s on one thread: 300 truncated-backprop steps over 32 streams of a 500 Hz sine at 8 kHz, then
    0.25 s generated by the stepper at temperature 1, whose spectral peak must be within 10 Hz of 500."""
    torch.manual_seed(0)
    cfg = WaybackConfig(sampling_frequency=8000, bit_depth=6, layout="wayback", cell="gru", layer_sizes=[32, 32],
                        periods=[1, 4], boundaries=[8, 8], chunk_size=2, io_sizes=[32])
    model = Wayback(cfg)
    seqs = [encode(s, 64, "mulaw") for s in tones(0, 32, 8000, 1.0, ["sine"], 500.0)]
    data = SegmentStreams(seqs, batch_size=32, segment_length=cfg.segment_length)
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    state = None
    for step in range(300):
        batch = data[step % len(data)]
        out = tbptt_objective(model, batch.x, state, batch.lengths, batch.reset)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = out.state
    model.eval()
    stepper = RecurrentStepper(model, 1, seed=0)
    stepper.prime(torch.as_tensor(seqs[0][:64]).view(1, -1))
    audio = decode(stepper.sample(2000, temperature=1.0)[0].numpy(), 64, "mulaw")
    spectrum = np.abs(np.fft.rfft((audio - audio.mean()) * np.hanning(len(audio))))
    peak = np.fft.rfftfreq(len(audio), 1 / 8000)[spectrum.argmax()]
    assert abs(peak - 500) <= 10, f"spectral peak at {peak} Hz"


@pytest.mark.parametrize("change, field", [
    (dict(periods=[1, 0, 2]), r"periods\[1\]"),
    (dict(periods=[1, 2, 8], boundaries=[4, 4, 4]), r"boundaries\[1\]"),
    (dict(cell="lstmx"), "cell"),
    (dict(activation="relu"), "activation"),
    (dict(layout="stack"), "periods"),
    (dict(boundaries=[4, 4]), "boundaries"),
    (dict(segment_length=20), "segment_length"),
    (dict(bit_depth=0), "bit_depth"),
    (dict(io_sizes=[0]), r"io_sizes\[0\]"),
    (dict(boundaries=[4, None, 4]), r"boundaries\[1\]"),
    (dict(use_bn="yes"), "use_bn"),
])
def test_bad_hyperparameters_are_refused_naming_the_field(change, field):
    cfg = dict(layer_sizes=[4, 4, 4], layout="wayback", periods=[1, 2, 2], boundaries=[4, 4, 4])
    cfg.update(change)
    with pytest.raises(ConfigError, match=field):
        WaybackConfig(**cfg)


def test_config_infers_levels_segment_and_span_and_warns_that_unroll_layer_count_is_ignored():
    with pytest.warns(UserWarning, match="unroll_layer_count is ignored"):
        c = WaybackConfig(sampling_frequency=11025, bit_depth=8, layout="wayback", chunk_size=4,
                          layer_sizes=[8, 8, 8], periods=[1, 1, 10], boundaries=[100, 100, 100],
                          unroll_layer_count=2)
    assert (c.quantization_levels, c.codec, c.sample_rate) == (256, "mulaw", 11025)
    assert c.segment_length == 4000 and c.longest_gradient_span == 4000
    assert WaybackConfig(layer_sizes=[8], boundaries=[50], chunk_size=2).segment_length == 100


def test_registered_family_round_trips_through_its_config_dict():
    c = tiny().config
    d = {"model_type": "wayback", **dataclasses.asdict(c)}
    assert config_from_dict(json.loads(json.dumps(d))) == c
    assert isinstance(build_model(c), Wayback)


@pytest.mark.parametrize("name", ["wayback_seed", "wayback_small", "stack_seed", "stack_small"])
def test_presets_are_valid_training_configs(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the seed's unroll_layer_count
        cfg = from_dict(json.loads((ROOT / "configs" / f"{name}.json").read_text()))
        model = cfg.model_config()
    assert isinstance(model, WaybackConfig) and model.layout == name.split("_")[0]
    if name.endswith("small"):
        assert sum(p.numel() for p in Wayback(model).parameters()) < 500_000
    else:
        assert model.longest_gradient_span in (400, 4000)


def test_cell_output_is_the_last_state_tensor():
    cell = Cell("lstm", 3, [2], "tanh", False)
    state = cell(torch.zeros(1, 2).split(2, dim=1), cell.zero_state(1), False)
    assert len(state) == 2 and Cell.output(state) is state[1]
