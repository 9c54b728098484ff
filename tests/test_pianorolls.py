"""Pianoroll data (core/data/pianorolls.py, core/data/sequences.py): the JSB splits as SOURCE.md lists them, the
training mean, checksums, padded batches with centred shifted inputs, the independent-Bernoulli floor, and that
padding a sequence next to a longer one does not change its bound under either model.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from core.data import pianorolls
from core.data.pianorolls import (
    ASSETS,
    DATASETS,
    KEYS,
    PianorollData,
    independent_bernoulli_ll,
    load_pianorolls,
    pianoroll_datasets,
    train_mean,
)
from core.data.sequences import Collate, SequenceDataset, shifted_inputs
from core.errors import ConfigError
from core.models.srnn import SRNN, SRNNConfig
from core.models.vrnn import VRNN, VRNNConfig
from tests.test_latent_rnn import masked_elbo


@pytest.fixture(scope="module")
def jsb() -> dict[str, list[np.ndarray]]:
    return load_pianorolls("jsb")


def test_jsb_splits_have_the_sizes_source_md_lists(jsb):
    assert [len(jsb[s]) for s in ("train", "valid", "test")] == [229, 76, 77]
    assert [sum(len(r) for r in jsb[s]) for s in ("train", "valid", "test")] == [13807, 4602, 4725]
    assert all(r.shape[1] == KEYS and r.dtype == np.float32 and set(np.unique(r)) <= {0.0, 1.0}
               for rolls in jsb.values() for r in rolls)


def test_train_mean_is_the_mean_over_all_training_frames(jsb):
    mean = train_mean(jsb["train"])
    np.testing.assert_allclose(mean, np.concatenate(jsb["train"]).astype(np.float64).mean(0), rtol=1e-12)
    # Frame-weighted, not the average of per-sequence means (they differ when lengths differ).
    assert not np.allclose(mean, np.mean([r.mean(0) for r in jsb["train"]], axis=0))


def test_independent_bernoulli_floor_on_jsb_test_is_minus_11_06(jsb):
    floor = independent_bernoulli_ll(jsb["test"], train_mean(jsb["train"]))
    assert abs(floor - (-11.06)) <= 0.01, floor


def test_the_training_mean_a_config_needs_is_read_once_per_file_and_again_once_the_file_changes(tmp_path, jsb,
                                                                                                 monkeypatch):
    name, _ = DATASETS["jsb"]
    shutil.copy(ASSETS / name, tmp_path / name)
    reads = []
    monkeypatch.setattr(pianorolls, "load_pianorolls", lambda *a: reads.append(a) or jsb)
    kind = PianorollData(root=str(tmp_path))
    first = kind.model_settings({})["train_mean"]
    assert kind.model_settings({})["train_mean"] == first == train_mean(jsb["train"]).tolist()
    assert len(reads) == 1
    (tmp_path / name).touch()  # a replaced file (its time changes) is read again
    kind.model_settings({})
    assert len(reads) == 2
    assert "train_mean" not in kind.model_settings({"train_mean": first})


def test_a_file_whose_sha256_differs_is_refused(tmp_path):
    name, _ = DATASETS["jsb"]
    shutil.copy(ASSETS / name, tmp_path / name)
    with open(tmp_path / name, "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ConfigError, match="sha256"):
        load_pianorolls("jsb", root=tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_pianorolls("nottingham", root=tmp_path)
    with pytest.raises(ConfigError, match="unknown pianoroll data set"):
        load_pianorolls("bach")


def test_collate_pads_targets_and_centres_and_shifts_inputs(jsb):
    mean = train_mean(jsb["train"])
    data = SequenceDataset(jsb["valid"][:3])
    batch = Collate(mean)([data[i] for i in range(3)])
    lengths = [len(r) for r in jsb["valid"][:3]]
    assert batch.lengths.tolist() == lengths and batch.targets.shape == (3, max(lengths), KEYS)
    m = torch.tensor(mean, dtype=torch.float32)
    for b, n in enumerate(lengths):
        roll = torch.from_numpy(jsb["valid"][b])
        assert torch.equal(batch.targets[b, :n], roll) and not batch.targets[b, n:].any()
        assert not batch.inputs[b, 0].any()
        torch.testing.assert_close(batch.inputs[b, 1:n], roll[:-1] - m)
        assert not batch.inputs[b, n:].any()
    torch.testing.assert_close(shifted_inputs(batch.targets, m, batch.lengths), batch.inputs)


@pytest.mark.parametrize("proposal", ["filtering", "smoothing"])
@pytest.mark.parametrize(("cls", "config_cls"), [(VRNN, VRNNConfig), (SRNN, SRNNConfig)])
def test_padding_next_to_a_longer_sequence_does_not_change_its_bound(jsb, cls, config_cls, proposal):
    """The one-particle ELBO of a JSB sequence, masked by its length, is the same alone and padded in a batch with a
    longer neighbour, for the same noise: padding never reaches a valid step (the smoothing proposal's reverse LSTM
    starts at each sequence's own end). The parameters are jittered first: at initialisation the biases are zero, so
    an encoder maps a zero (padding) frame to zero and an LSTM fed zeros from a zero state stays at zero, which would
    hide a reverse LSTM that started at the padded end."""
    mean = train_mean(jsb["train"])
    short, long = jsb["test"][1], jsb["test"][0]
    assert len(long) > len(short)
    torch.manual_seed(0)
    model = cls(config_cls(train_mean=mean.tolist(), proposal=proposal, latent_size=16))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    batch = Collate(mean)([torch.from_numpy(short), torch.from_numpy(long)])
    eps = torch.randn(2, len(long), 16)
    with torch.no_grad():
        together = masked_elbo(model, batch.targets, batch.lengths, eps)
        alone = masked_elbo(model, batch.targets[:1, : len(short)], batch.lengths[:1], eps[:1, : len(short)])
    torch.testing.assert_close(together[0], alone[0], rtol=0, atol=1e-3)


def test_pianoroll_datasets_hold_whole_sequences_per_split(jsb):
    datasets, mean = pianoroll_datasets("jsb")
    assert {s: len(d) for s, d in datasets.items()} == {"train": 229, "valid": 76, "test": 77}
    assert datasets["test"].frames == 4725 and torch.equal(datasets["test"][5], torch.from_numpy(jsb["test"][5]))
    np.testing.assert_allclose(mean, train_mean(jsb["train"]))


def test_an_original_pickle_is_read_through_the_restricted_unpickler_and_an_unsafe_one_refused(tmp_path):
    import os
    import pickle

    from core.data.pianorolls import load_pianoroll_pickle

    sets = {"train": [[[60, 64], [], [21, 108]]], "valid": [[[62]]], "test": [[[67], [67]]]}
    path = tmp_path / "JSB Chorales.pickle"
    path.write_bytes(pickle.dumps(sets, protocol=2))
    rolls = load_pianoroll_pickle(path)
    train = rolls["train"][0]
    assert train.shape == (3, 88) and train[0, [39, 43]].tolist() == [1, 1] and train[0].sum() == 2
    assert train[1].sum() == 0 and train[2, [0, 87]].tolist() == [1, 1] and len(rolls["test"][0]) == 2

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "bad.pickle"
    bad.write_bytes(pickle.dumps({"train": Exploit()}))
    with pytest.raises(ConfigError, match="not a pianoroll pickle"):
        load_pianoroll_pickle(bad)
