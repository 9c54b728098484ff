"""Consecutive segments for truncated backprop: every sample scored once, each batch continuing the last."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from core.data.segments import SegmentStreams
from core.errors import ConfigError
from core.models.wayback import Wayback, WaybackConfig
from core.training.tbptt import tbptt_objective


def numbered(lengths: list[int]) -> list[np.ndarray]:
    """Sequences whose samples are all distinct: sequence i holds 1000 i + 1, 1000 i + 2, ..."""
    return [1000 * i + 1 + np.arange(n) for i, n in enumerate(lengths)]


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=9), batch=st.integers(1, 4),
       segment=st.integers(1, 16), epoch=st.integers(0, 3))
def test_every_sample_is_scored_exactly_once_and_each_batch_continues_the_last(lengths, batch, segment, epoch):
    ds = SegmentStreams(numbered(lengths), batch, segment, seed=1)
    ds.set_epoch(epoch)
    scored = []
    previous = None
    for k in range(len(ds)):
        b = ds[k]
        assert b.x.shape == (batch, segment)
        for row in range(batch):
            n = int(b.lengths[row])
            piece = b.x[row, :n].tolist()
            assert (b.x[row, n:] == 0).all()
            scored += piece
            if n and not b.reset[row]:  # a continuation: it starts right after the previous batch's row
                assert previous is not None and piece[0] == previous[row] + 1
            if n and b.reset[row]:  # a new sequence starts at its first sample
                assert piece[0] % 1000 == 1
        previous = [int(b.x[r, int(b.lengths[r]) - 1]) if b.lengths[r] else None for r in range(batch)]
    assert sorted(scored) == sorted(np.concatenate(numbered(lengths)).tolist())


def test_streams_stay_even_and_batches_iterate_in_order_through_a_data_loader():
    ds = SegmentStreams(numbered([40, 40, 40, 40, 10, 10]), batch_size=2, segment_length=10, shuffle=False)
    assert [len(p) for p in ds.plan] == [9, 9] and len(ds) == 9  # 4 + 4 + 1 segments each
    loaded = list(DataLoader(ds, batch_size=None, shuffle=False))
    assert all(torch.equal(a.x, ds[k].x) for k, a in enumerate(loaded))


def test_epochs_deal_sequences_differently_but_reproducibly():
    a, b = (SegmentStreams(numbered([5] * 8), 2, 5, seed=0) for _ in range(2))
    plans = []
    for epoch in range(3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert a.plan == b.plan
        plans.append(a.plan)
    assert plans[0] != plans[1] or plans[1] != plans[2]


@pytest.mark.parametrize("layout", ["stack", "wayback"])
def test_segments_with_the_carried_state_score_each_sample_once_as_one_forward_would(layout):
    """Summed over all batches, the truncated-backprop objective's NLL and count equal one forward over each
    whole sequence from the zero state: the carried state does the reference's one-element overlap."""
    torch.manual_seed(0)
    wayback = layout == "wayback"
    cfg = WaybackConfig(sampling_frequency=8000, bit_depth=4, layout=layout, cell="gru", layer_sizes=[6, 5],
                        periods=[1, 2] if wayback else None, boundaries=[2, 2], chunk_size=2, io_sizes=[6])
    model = Wayback(cfg).eval()
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 16, n) for n in (30, 17, 8, 25, 3)]
    ds = SegmentStreams(seqs, batch_size=2, segment_length=cfg.segment_length)
    assert cfg.segment_length == (8 if wayback else 4)
    total, count, state = 0.0, 0.0, None
    with torch.no_grad():
        for k in range(len(ds)):
            b = ds[k]
            out = tbptt_objective(model, b.x, state, b.lengths, b.reset)
            total, count, state = total + out.sums["nll_nats"], count + out.count, out.state
        expected = 0.0
        for s in seqs:
            x = torch.as_tensor(np.pad(s, (0, -len(s) % 2))).view(1, -1)
            expected += float(F.cross_entropy(model(x)[0], x, reduction="none")[0, : len(s)].sum())
    assert count == sum(len(s) for s in seqs)
    assert total == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kwargs, field", [
    (dict(sequences=[], batch_size=2, segment_length=4), "empty"),
    (dict(sequences=[np.arange(3)], batch_size=0, segment_length=4), "batch_size"),
    (dict(sequences=[np.arange(3)], batch_size=1, segment_length=0), "segment_length"),
    (dict(sequences=[np.zeros(0, dtype=int)], batch_size=1, segment_length=4), r"sequences\[0\]"),
    (dict(sequences=[np.ones(3)], batch_size=1, segment_length=4), r"sequences\[0\]"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SegmentStreams(**kwargs)
