"""The training loop: one run in one run folder, any model family, any objective.

    Trainer(cfg, run_dir).run()        # until train.max_steps, or SIGTERM / Ctrl-C (a checkpoint first)

Each step draws a batch (core.data.Batch), calls the config's objective (core.training.objectives),
which returns the loss, its additive statistics and any state carried into the next batch of the
same streams, and takes an optimiser step. Validation calls the same objective in evaluation form
(core.training.evaluation), so what is trained and what is reported never drift. With `train.ema` the
weights that are validated, saved and sampled are a moving average of the trained ones (Polyak
averaging), which smooths out the step-to-step noise of the trained weights.

A run folder holds:
    config.json       the full TrainConfig
    metrics.jsonl     one JSON row per log: {"split": "train"|"valid", "step", "nll_nats", "bits", "acc", ...};
                      train rows add "lr" and "samples_per_s"
    status.json       {"state": "running"|"finished"|"stopped"|"failed", "step", "max_steps", ...}
    checkpoints/step_XXXXXXXX/   checkpoint folders (config.json, model.safetensors, README.md,
                      metrics.json, optimizer.safetensors, trainer_state.json; with train.ema,
                      model.safetensors holds the averaged weights and trained.safetensors the trained ones)
    latest            the name of the newest complete checkpoint folder (replaced atomically)

Under torchrun every rank trains on its own shard (DDP, gloo on CPU, nccl on CUDA) and draws its own
noise (a bound's proposals and resampling); the train rows pool every rank's steps; only rank 0
writes the run folder.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from core import atomic, checkpoints
from core.data import build_split
from core.devices import pick_device
from core.errors import CheckpointError, ConfigError
from core.models import build_model
from core.run_files import METRICS, metrics_rows
from core.training.config import TrainConfig
from core.training.evaluation import evaluate
from core.training.objectives import LN2, Through

TRAINED = "trained.safetensors"  # with train.ema: the trained weights, beside the averaged ones a checkpoint holds


class Trainer:
    """One training run in one run folder; `run()` trains until max_steps or a stop signal."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False,
                 device: str | None = None, show_progress: bool = True, command: str = ""):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0
        self.show_progress, self.command = show_progress, command
        self.stop_requested = False
        self.device = pick_device(device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))

        opt = cfg.train
        torch.manual_seed(opt.seed)
        model_config = cfg.model_config()
        self.model = build_model(model_config)
        if opt.init_from and not resume:  # a resumed run has its own weights
            try:
                checkpoints.load_weights_into(self.model, opt.init_from)
            except CheckpointError as e:
                raise ConfigError(f"train.init_from: {e}") from e
        self.model.to(self.device)
        self.train_set = build_split(cfg.data, "train", model_config)
        self.valid_set = build_split(cfg.data, "valid", model_config)
        if len(self.train_set) < opt.batch_size * self.world:
            raise ConfigError(
                f"train.batch_size={opt.batch_size} x {self.world} process(es) is larger than the "
                f"{len(self.train_set)} training windows; lower the batch size or add data"
            )
        if len(self.valid_set) < self.world:
            raise ConfigError(f"{self.world} processes need at least as many validation items, the split has "
                              f"{len(self.valid_set)}; use fewer processes")
        cfg.objective.check(self.model, self.train_set, self.world)
        if self.rank:  # the same initial weights on every rank, then each rank's own noise
            torch.manual_seed(opt.seed + self.rank)
        self.objective = cfg.objective.build(self.model, opt.seed, training=True)
        self.eval_objective = cfg.objective.build(self.model, opt.seed, training=False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
        # The first step's weights start the average; each later step moves it by 1 - ema towards the trained ones.
        self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(opt.ema),
                                      use_buffers=True) if opt.ema else None
        self.step, self.epoch = 0, 0
        self.best_valid, self.bad_validations = math.inf, 0
        if resume:
            self._load_latest()
        elif self.is_main and (self.run_dir / "config.json").exists():
            raise ConfigError(f"{self.run_dir} already holds a run; pass --resume to continue it "
                              "or pick another --run-dir")

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> dict:
        """Train to max_steps (or until stopped); returns the last validation metrics."""
        opt = self.cfg.train
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        net = DistributedDataParallel(Through(self.model)) if self.world > 1 else self.model
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic.write_json(self.run_dir / "config.json", self.cfg.to_dict())
            self._status("running")
        bar = tqdm(total=opt.max_steps, initial=self.step, disable=not (self.is_main and self.show_progress),
                   desc="train", unit="step", dynamic_ncols=True)
        window, last = _Mean(), {}
        tick = time.perf_counter()
        try:
            while self.step < opt.max_steps and not self.stop_requested:
                state = None  # an epoch starts every stream afresh
                for batch in self.train_set.loader(opt.batch_size, world=self.world, rank=self.rank, seed=opt.seed,
                                                   epoch=self.epoch):
                    stats, state = self._train_step(net, batch, state)
                    self.step += 1
                    window.add(stats)
                    bar.update(1)
                    if self.step % opt.log_every == 0 or self.step == opt.max_steps:
                        now = time.perf_counter()
                        row = window.mean(self.device if self.world > 1 else None)
                        row["samples_per_s"] = row.pop("targets") / (now - tick)
                        row["lr"] = self.optimizer.param_groups[0]["lr"] * self._warmup(self.step)
                        row["bits"] = row["nll_nats"] / LN2
                        self._log("train", row)
                        bar.set_postfix(bits=f"{row['bits']:.3f}", lr=f"{row['lr']:.2g}")
                        window, tick = _Mean(), now
                    stop = self._agree(self.stop_requested)
                    if self.step % opt.valid_every == 0 or self.step == opt.max_steps or stop:
                        last = self._validate_and_save()
                    if self.step >= opt.max_steps or stop:
                        self.stop_requested = stop
                        break
                self.epoch += 1
        except BaseException:
            if self.is_main:
                self._status("failed", error=traceback.format_exc())
            raise
        finally:
            bar.close()
        if self.is_main:
            self._status("stopped" if self.stop_requested and self.step < opt.max_steps else "finished")
        return last

    def _train_step(self, net, batch, state) -> tuple[dict, object]:
        """One optimiser step: (the batch's statistics per scored unit and its count, the carried state)."""
        opt = self.cfg.train
        net.train()
        out = self.objective(net, batch.to(self.device), state)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if opt.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.clip_norm)
        scale = self._warmup(self.step + 1)
        rates = [group["lr"] for group in self.optimizer.param_groups]
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate * scale
        self.optimizer.step()
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):  # the plateau decay's rate
            group["lr"] = rate
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return {**out.sums, "targets": out.count}, out.state

    def _warmup(self, step: int) -> float:
        """What the rate is multiplied by at `step` (1, 2, ...): step / train.warmup_steps, up to 1."""
        n = self.cfg.train.warmup_steps
        return min(1.0, step / n) if n else 1.0

    @property
    def kept_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average with train.ema, else the trained ones."""
        return self.averaged.module if self.averaged is not None else self.model

    def evaluate(self, dataset) -> dict:
        """The objective's statistics per scored unit over a split (nll_nats, bits, acc...), pooled across ranks."""
        return evaluate(self.kept_model, dataset, self.eval_objective, self.cfg.train.batch_size, self.device,
                        self.cfg.train.valid_batches, self.world, self.rank)

    def _validate_and_save(self) -> dict:
        opt = self.cfg.train
        metrics = self.evaluate(self.valid_set)
        improved = metrics["nll_nats"] < self.best_valid - 1e-6
        if improved:
            self.best_valid, self.bad_validations = metrics["nll_nats"], 0
        else:
            self.bad_validations += 1
            if self.bad_validations >= opt.decay_patience > 0:
                for group in self.optimizer.param_groups:
                    group["lr"] *= opt.decay_rate
                self.bad_validations = 0
        if self.is_main:
            self._log("valid", metrics)
            self._save_checkpoint(metrics, improved)
            self._status("running")
        if self.world > 1:
            dist.barrier()
        return metrics

    def _agree(self, flag: bool) -> bool:
        """Every rank stops together if any rank was asked to stop."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    # -- the run folder -----------------------------------------------------------------

    def _log(self, split: str, row: dict) -> None:
        if not self.is_main:
            return
        row = {"split": split, "step": self.step, **row, "time": time.time()}
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _status(self, state: str, **extra) -> None:
        atomic.write_json(self.run_dir / "status.json", {
            "state": state, "step": self.step, "max_steps": self.cfg.train.max_steps,
            "pid": os.getpid(), "world_size": self.world, "updated": time.time(), **extra,
        })

    def _save_checkpoint(self, metrics: dict, best: bool) -> None:
        ckpt_dir = self.run_dir / "checkpoints"
        name = f"step_{self.step:08d}"
        names = {"bits": "bits_per_sample", "acc": "accuracy"}  # the names model cards have always used
        card_metrics = {"step": self.step, **{f"valid_{names.get(k, k)}": round(v, 5) for k, v in metrics.items()
                                              if k not in ("items", "dims_per_item")}}
        notes = f"Trained with `{self.command}`." if self.command else ""
        opt_tensors, opt_meta = _optimizer_state(self.optimizer)
        state = {"step": self.step, "epoch": self.epoch + 1, "best_valid": self.best_valid,
                 "bad_validations": self.bad_validations, "optimizer": opt_meta}
        tensors = {"optimizer.safetensors": opt_tensors}
        if self.averaged is not None:  # model.safetensors gets the average; a resume trains on from these
            tensors[TRAINED] = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        checkpoints.save_checkpoint(
            self.kept_model, ckpt_dir / name, overwrite=True, metrics=card_metrics,
            card=checkpoints.model_card(self.kept_model, card_metrics, notes),
            extra_tensors=tensors,
            extra_files={"trainer_state.json": json.dumps(state).encode()},
        )
        atomic.write_text(self.run_dir / "latest", name)
        if best:
            atomic.write_text(self.run_dir / "best", name)
        self._prune(ckpt_dir, name)

    def _prune(self, ckpt_dir: Path, newest: str) -> None:
        """Remove checkpoints beyond the newest keep_checkpoints, sparing the best and every keep_every-th."""
        opt, best = self.cfg.train, self.run_dir / "best"
        spared = {newest}
        if opt.keep_best and best.is_file():
            spared.add(best.read_text().strip())
        old = []
        for p in sorted(ckpt_dir.glob("step_*")):
            step = p.name.removeprefix("step_")
            milestone = opt.keep_every and step.isdigit() and int(step) % opt.keep_every == 0
            if p.is_dir() and p.name not in spared and not milestone:
                old.append(p)
        for p in old[: max(0, len(old) - (opt.keep_checkpoints - 1))]:
            checkpoints.remove_checkpoint(p)

    def _load_latest(self) -> None:
        if self.is_main:  # a save killed half way leaves temporaries (never while this run saves: it is us)
            checkpoints.remove_stale_temporaries(self.run_dir)
        folder = checkpoints.latest_checkpoint(self.run_dir)
        if folder is None:
            raise ConfigError(f"--resume: {self.run_dir} has no checkpoint yet; start it without --resume")
        state = json.loads((folder / "trainer_state.json").read_text())
        loaded = checkpoints.load_checkpoint(folder, self.device).state_dict()
        trained = folder / TRAINED
        self.model.load_state_dict(checkpoints.load_state(folder, TRAINED) if trained.is_file() else loaded)
        if self.averaged is not None:  # the saved average (or, for a run that had none, the weights) goes on
            self.averaged.module.load_state_dict(loaded)
            self.averaged.n_averaged.fill_(max(1, state["step"]))
        _load_optimizer_state(self.optimizer, checkpoints.load_state(folder, "optimizer.safetensors"),
                              state["optimizer"], self.device)
        self.step, self.epoch = state["step"], state["epoch"]
        self.best_valid, self.bad_validations = state["best_valid"], state["bad_validations"]
        started_at = json.loads((self.run_dir / "config.json").read_text()).get("train", {}).get("lr")
        if started_at is not None and self.cfg.train.lr != started_at:
            # A resume that names a new train.lr restarts the optimizer's rate there (Adam's moments kept); the
            # plateau decay then goes on from it. Without one, a decayed rate is kept as it was.
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.train.lr
            self.bad_validations = 0
        if self.is_main:
            _truncate_metrics(self.run_dir, self.step)


class _Mean:
    """The steps' additive stats pooled and divided by their pooled count ("targets"), as evaluation pools them."""

    def __init__(self):
        self.sums: dict[str, float] = {}

    def add(self, stats: dict) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def mean(self, device: torch.device | None = None) -> dict:
        """Per scored unit, plus "targets" (the count); with a device, pooled over every rank first."""
        keys = sorted(self.sums)
        if device is not None:
            totals = torch.tensor([self.sums[k] for k in keys], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            self.sums = dict(zip(keys, totals.tolist(), strict=True))
        count = max(self.sums["targets"], 1.0)
        return {k: (v if k == "targets" else v / count) for k, v in self.sums.items()}


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into safetensors-able tensors and JSON metadata."""
    sd = optimizer.state_dict()
    tensors = {f"{idx}.{k}": v for idx, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer_state(optimizer, tensors: dict, meta: dict, device) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v if name == "step" else v.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Keep metric rows up to the resumed step (drops a torn last line from a kill -9)."""
    rows = [row for row in metrics_rows(run_dir) if row["step"] <= step]
    atomic.write_text(run_dir / METRICS, "".join(json.dumps(row) + "\n" for row in rows))
