"""What the Sequences page runs on: its pianoroll models and data, the Gaussian HMM and its proposals, and
seeded draws from torch's global generator.

    music_models(store)                 the store's pianoroll VRNNs/SRNNs, then an untrained VRNN (labelled so)
    music_model(store, choice, data)    the chosen model, ready to sample
    held_out_rolls(name)                    a data set's test pianorolls and its training mean (cached)
    trained_on(config)                  the data set whose training mean a model's config carries, if any
    ghmm_choices(store)                 the proposals to filter the GHMM with: prior, filtering, smoothing,
                                        then each GHMM checkpoint (its learned proposal)
    ghmm_model(store, choice, steps)    a GaussianHMM in float64 on the CPU for that choice
    seeded(seed)                        a block with torch's global generator seeded (the models draw from it)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from core.data.pianorolls import DATASETS, KEYS, load_pianorolls, train_mean
from core.errors import ConfigError
from core.model_store import ModelStore
from core.models.ghmm import GaussianHMM, GHMMConfig
from core.models.vrnn import VRNN, VRNNConfig
from pages.checks import require
from pages.model_picker import metrics_text

UNTRAINED = "untrained"  # the model choice that builds an untrained VRNN
UNTRAINED_NAME = "untrained VRNN (random weights)"
UNTRAINED_LATENT = 32  # latent (and hidden) size of the untrained VRNN
FIXED_PROPOSALS = ("prior", "filtering", "smoothing")  # exact for the true GHMM: need no training
GHMM_VARIANCE = GHMMConfig().variance
SEQUENCE_TYPES = ("vrnn", "srnn")

_GLOBAL_RNG = threading.Lock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generator seeded with `seed`, restoring it afterwards.

    The sequence models draw their proposals from the global generator (core.inference.smc); the
    lock keeps two of this page's requests from interleaving their draws, so a seed repeats a run.
    """
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- pianoroll models and data ----------------------------------------------------------------------


def _plays_pianorolls(entry: dict) -> bool:
    config = entry["config"]
    return (entry["model_type"] in SEQUENCE_TYPES and config.get("data_dim") == KEYS
            and config.get("emission") == "bernoulli")


def music_models(store: ModelStore) -> list[dict]:
    """The store's VRNN/SRNN checkpoints over 88-key Bernoulli frames, then the untrained VRNN's entry.

    Each entry has the store's keys (name, path, model_type, config, parameters, metrics); the untrained
    one has path UNTRAINED and no metrics.
    """
    untrained = {"name": UNTRAINED_NAME, "title": UNTRAINED_NAME, "label": UNTRAINED_NAME, "path": UNTRAINED,
                 "model_type": "vrnn", "receptive_field": None,
                 "config": {"model_type": "vrnn", "data_dim": KEYS, "latent_size": UNTRAINED_LATENT},
                 "parameters": _untrained_parameters(), "metrics": {}}
    return [m for m in store.list_models() if _plays_pianorolls(m)] + [untrained]


@functools.cache
def _untrained_parameters() -> int:
    # Built on the CPU (milliseconds; fork_rng leaves the process's random numbers as they were), not on the meta
    # device: its first use imports torch._dynamo, a second of the app's start-up.
    with torch.random.fork_rng(devices=[]):
        return sum(p.numel() for p in VRNN(VRNNConfig(latent_size=UNTRAINED_LATENT)).parameters())


def music_summary(entry: dict | None, trained: int | None = None) -> str:
    """Markdown about a listed pianoroll model; `trained` is how many trained ones the store has (None: unknown)."""
    if entry is None or entry["path"] == UNTRAINED:
        head = ("**No trained sequence model found.** Train one (`python -m core.train --config "
                "configs/vrnn_jsb_fivo.json --run-dir runs/vrnn-jsb`) or copy a VRNN/SRNN checkpoint into the "
                "app's model folders, then press ↻.\n\n") if trained == 0 else ""
        return head + (f"**{UNTRAINED_NAME}** — not trained: random weights (seed 0) whose only knowledge is how "
                       "often each key sounds in the chosen data set (its output bias). Its continuations are "
                       "noise around those frequencies and its bound sits near the independent-keys baseline; "
                       "it shows the machinery, not music.")
    config = entry["config"]
    lines = [f"**{entry['name']}** — a {entry['model_type'].upper()} with {config.get('latent_size')}-d latents "
             f"and a {config.get('proposal')} proposal, {entry['parameters']:,} parameters."]
    data = trained_on(config)
    if data:
        lines.append(f"Trained on **{data}** (its training mean matches that data set's).")
    if entry["metrics"]:
        lines.append("Metrics: " + metrics_text(entry["metrics"], entry["config"]))
    return "\n\n".join(lines)


@functools.lru_cache(maxsize=len(DATASETS))
def held_out_rolls(name: str) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Data set `name`'s test pianorolls ((T_i, 88) float32 0/1 each) and its training mean (88,) float64."""
    require(name in DATASETS, f"data set must be one of {', '.join(DATASETS)}, got {name!r}")
    rolls = load_pianorolls(name)
    return tuple(rolls["test"]), train_mean(rolls["train"])


def trained_on(config: dict) -> str | None:
    """The data set whose training mean equals the model config's `train_mean` (to 1e-5), or None."""
    mean = config.get("train_mean") or []
    if len(mean) != KEYS:
        return None
    for name in DATASETS:
        if np.allclose(held_out_rolls(name)[1], mean, atol=1e-5):
            return name
    return None


@functools.lru_cache(maxsize=len(DATASETS))
def _untrained(data: str) -> VRNN:
    with seeded(0):
        return VRNN(VRNNConfig(latent_size=UNTRAINED_LATENT, train_mean=held_out_rolls(data)[1].tolist())).eval()


def music_model(store: ModelStore, choice: str | None, data: str) -> tuple[torch.nn.Module, str]:
    """(model, its name) for a choice of `music_models`; the untrained VRNN takes data set `data`'s key frequencies."""
    require(bool(choice), "choose a model first")
    if choice == UNTRAINED:
        return _untrained(data), UNTRAINED_NAME
    net = store.get(choice)
    entry = {"model_type": net.model_type, "config": {"data_dim": getattr(net.config, "data_dim", None),
                                                       "emission": getattr(net.config, "emission", None)}}
    require(_plays_pianorolls(entry), f"{choice} is not a VRNN or SRNN over 88-key pianoroll frames; "
            "choose one of the listed models")
    name = next((m["name"] for m in store.list_models() if m["path"] == choice), str(choice))
    return net, name


# -- the Gaussian HMM -------------------------------------------------------------------------------


def ghmm_choices(store: ModelStore) -> list[tuple[str, str]]:
    """(label, value) proposals: the three exact ones by name, then each GHMM checkpoint by path."""
    learned = [(f"learned: {m['name']} ({m['config'].get('proposal')}, up to {m['config'].get('num_timesteps')} "
                "steps)", m["path"]) for m in store.list_models() if m["model_type"] == "ghmm"]
    return [(p, p) for p in FIXED_PROPOSALS] + learned


def ghmm_model(store: ModelStore, choice: str | None, steps: int) -> GaussianHMM:
    """The GHMM (float64, CPU, eval) filtering with `choice`: a FIXED_PROPOSALS name (the true model, v = 0.1)
    or a GHMM checkpoint's path, whose learned proposal must cover `steps` steps."""
    require(bool(choice), "choose a proposal first")
    if choice in FIXED_PROPOSALS:
        return GaussianHMM(GHMMConfig(num_timesteps=steps, proposal=choice)).double().eval()
    net = store.get(choice)
    require(isinstance(net, GaussianHMM), f"{choice} is not a GHMM checkpoint; choose one of the listed proposals")
    if net.learned and steps > net.config.num_timesteps:
        raise ConfigError(f"this learned proposal has parameters for {net.config.num_timesteps} steps; "
                          f"choose at most {net.config.num_timesteps} steps")
    copy = GaussianHMM(net.config)
    copy.load_state_dict(net.state_dict())
    return copy.double().eval()
