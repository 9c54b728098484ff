"""The four polyphonic pianoroll data sets of Boulanger-Lewandowski et al. (2012), read offline.

Each set is a MATLAB file in assets/pianorolls/ (provenance, licence and checksums in its
SOURCE.md) holding the splits `traindata`, `validdata`, `testdata`: cell arrays of (T_i, 88)
0/1 pianorolls, key k = MIDI note 21 + k (A0 .. C8), one frame per beat. A file is used only
after its sha256 matches, and `scipy.io.loadmat` executes nothing (unlike the original pickles).

    rolls = load_pianorolls("jsb")              # {"train": [(T_i, 88) float32, ...], ...}
    mean = train_mean(rolls["train"])           # (88,) over every training frame
    data = SequenceDataset(rolls["train"])      # items: whole sequences
    loader = DataLoader(data, batch_size=4, shuffle=True, collate_fn=Collate(mean))
    datasets, mean = pianoroll_datasets("jsb")  # the same, every split at once

The floor a model must beat is `independent_bernoulli_ll`: each key an independent Bernoulli
at its training mean (JSB test: -11.06 nats per timestep).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import fetch
from core.data.registry import DataKind, check_split, register_kind
from core.data.sequences import SequenceDataset
from core.errors import ConfigError
from core.validation import check_int, need

KEYS = 88  # piano keys, the frame size D
LOWEST_MIDI = 21  # MIDI note of key 0 (A0)
SPLITS = ("train", "valid", "test")
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "pianorolls"

# name -> (file, sha256), as listed in assets/pianorolls/SOURCE.md
DATASETS: dict[str, tuple[str, str]] = {
    "jsb": ("JSB_Chorales.mat", "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4"),
    "nottingham": ("Nottingham.mat", "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea"),
    "musedata": ("MuseData.mat", "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff"),
    "piano-midi": ("Piano_midi.mat", "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34"),
}


def load_pianorolls(name: str, root: str | os.PathLike | None = None) -> dict[str, list[np.ndarray]]:
    """The splits of data set `name` (see DATASETS) -> {"train"|"valid"|"test": [(T_i, 88) float32 0/1]}.

    root: the folder holding the .mat files (default assets/pianorolls). ConfigError if the name
    is unknown, the file is missing, or its sha256 does not match.
    """
    import scipy.io

    if name not in DATASETS:
        raise ConfigError(f"unknown pianoroll data set {name!r}; known: {', '.join(DATASETS)}")
    filename, sha = DATASETS[name]
    path = Path(root if root is not None else ASSETS) / filename
    if not path.is_file():
        raise ConfigError(f"pianoroll file {path} not found; see assets/pianorolls/SOURCE.md for where it comes from")
    if fetch.file_sha256(path) != sha:
        raise ConfigError(f"{path} does not have the expected sha256 {sha}; replace it with the file SOURCE.md lists")
    mat = scipy.io.loadmat(path)
    rolls = {}
    for split in SPLITS:
        cells = mat[f"{split}data"].ravel()
        rolls[split] = [np.ascontiguousarray(c, dtype=np.float32) for c in cells]
        if any(r.ndim != 2 or r.shape[1] != KEYS for r in rolls[split]):
            raise ConfigError(f"{path}: {split} pianorolls must be (T, {KEYS}) arrays")
    return rolls


def load_pianoroll_pickle(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """An original Boulanger-Lewandowski pickle ({"train"|"valid"|"test": [sequence]}, a sequence a list of
    frames, a frame the MIDI note numbers sounding) -> {split: [(T_i, 88) float32 0/1]}.

    Read with the restricted unpickler (core.data.fetch.safe_loads): the file comes from the user, so
    nothing in it is ever called. ConfigError for a file that is not such a pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pianoroll pickle {path} not found")
    try:
        data = fetch.safe_loads(path.read_bytes())
    except Exception as e:  # any unpickling failure, a refused global included
        raise ConfigError(f"{path} is not a pianoroll pickle of plain lists: {e}") from e
    if not isinstance(data, dict) or any(split not in data for split in SPLITS):
        raise ConfigError(f"{path} must hold a dict with {', '.join(SPLITS)} lists of sequences")
    rolls = {}
    for split in SPLITS:
        rolls[split] = []
        for sequence in data[split]:
            roll = np.zeros((len(sequence), KEYS), np.float32)
            for t, frame in enumerate(sequence):
                keys = np.asarray(list(frame), dtype=np.int64) - LOWEST_MIDI
                if keys.size and (keys.min() < 0 or keys.max() >= KEYS):
                    highest = LOWEST_MIDI + KEYS - 1
                    raise ConfigError(f"{path}: {split} holds a note outside MIDI {LOWEST_MIDI}..{highest}")
                roll[t, keys] = 1.0
            rolls[split].append(roll)
    return rolls


def train_mean(rolls: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of every frame of `rolls` (T_i, 88) -> (88,) float64: how often each key sounds."""
    if not rolls:
        raise ValueError("train_mean needs at least one pianoroll")
    total = sum(np.asarray(r, dtype=np.float64).sum(0) for r in rolls)
    return total / sum(len(r) for r in rolls)


def independent_bernoulli_ll(rolls: Sequence[np.ndarray], mean: np.ndarray, clip: float = 1e-4) -> float:
    """Log-likelihood in nats per timestep of `rolls` under independent Bernoullis at `mean` (clipped to
    [clip, 1 - clip], as the models clip it for their logit bias): the floor a sequence model must beat."""
    p = np.clip(np.asarray(mean, dtype=np.float64), clip, 1 - clip)
    frames = np.concatenate([np.asarray(r, dtype=np.float64) for r in rolls])
    return float((frames @ np.log(p) + (1 - frames) @ np.log1p(-p)).mean())


def pianoroll_datasets(name: str, root: str | os.PathLike | None = None
                       ) -> tuple[dict[str, SequenceDataset], np.ndarray]:
    """({"train"|"valid"|"test": SequenceDataset of (T_i, 88) sequences}, training mean (88,)) of data set `name`."""
    rolls = load_pianorolls(name, root)
    return {split: SequenceDataset(r) for split, r in rolls.items()}, train_mean(rolls["train"])


def check_frame_model(model_config, dim: int, emission: str, what: str) -> None:
    """ConfigError unless the model reads frames of `dim` values with `emission` (a vrnn or srnn config)."""
    if getattr(model_config, "data_dim", None) != dim or getattr(model_config, "emission", None) != emission:
        raise ConfigError(f"{what} are frames of {dim} values: use a sequence model (vrnn or srnn) with "
                          f"data_dim={dim} and emission={emission!r}")


@register_kind("pianorolls")
@dataclass
class PianorollData(DataKind):
    """One of the four polyphonic pianoroll sets, whole sequences of 88-key frames, padded with lengths."""

    path_fields = ("root",)

    name: str = "jsb"  # "jsb", "nottingham", "musedata" or "piano-midi"
    root: str = ""  # the folder of the .mat files; "" = assets/pianorolls
    pickle_path: str = ""  # instead, an original .pickle of the set (read by the restricted unpickler)
    max_items: int | None = None  # keep at most this many sequences per split

    def __post_init__(self) -> None:
        need(self.name in DATASETS, f"name must be one of {tuple(DATASETS)}, got {self.name!r}")
        need(isinstance(self.root, str), f"root must be a folder path or \"\", got {self.root!r}")
        need(isinstance(self.pickle_path, str), f"pickle_path must be a file path or \"\", got {self.pickle_path!r}")
        if self.max_items is not None:
            check_int("max_items", self.max_items, 1)

    def build(self, split: str, model_config) -> SequenceDataset:
        check_split(split)
        check_frame_model(model_config, KEYS, "bernoulli", "pianorolls")
        return SequenceDataset(self.rolls()[split][: self.max_items])

    def rolls(self) -> dict[str, list[np.ndarray]]:
        if self.pickle_path:
            return load_pianoroll_pickle(self.pickle_path)
        return load_pianorolls(self.name, self.root or None)

    def model_settings(self, model: dict) -> dict:
        """88 Bernoulli keys, and the training mean that centres the inputs and biases the logits."""
        settings = {"data_dim": KEYS, "emission": "bernoulli"}
        if "train_mean" not in model:
            source = Path(self.pickle_path or Path(self.root or ASSETS) / DATASETS[self.name][0])
            st = source.stat() if source.is_file() else None
            stamp = (st.st_size, st.st_mtime_ns) if st else None
            settings["train_mean"] = list(_train_mean_of(self.name, self.root, self.pickle_path, stamp))
        return settings


@functools.lru_cache(maxsize=16)
def _train_mean_of(name: str, root: str, pickle_path: str, stamp: tuple[int, int] | None) -> tuple[float, ...]:
    """The training mean of a PianorollData's rolls, kept per file size and time: the Train page's presets ask
    for the same few at every start (each read costs a sha256 and a .mat load)."""
    rolls = load_pianoroll_pickle(pickle_path) if pickle_path else load_pianorolls(name, root or None)
    return tuple(train_mean(rolls["train"]).tolist())
