"""The particle filter of the VRNN and the SRNN as one C call per pass (filter_kernel.c), forward and backward.

The SMC engine (core.inference.smc) runs a model one timestep at a time from Python: about 50
autograd nodes per step, each a few microseconds on 16-row tensors, so these models' training steps
were bound by per-op overhead. Here the whole filter (the model's steps and the engine's weights,
criterion, ancestors and state gathering) is one kernel call, and its backward pass another; the
weight gradients are then one matrix product per layer over all steps at once.

    result = run(model, x, lengths, particles, threshold, resampling, generator)
    result.log_p_hat      (B,) differentiable in the model's parameters, as run_smc's
    result.log_weights, result.resampled, result.ancestors    what the kernel recorded, for traces

It computes what `run_smc` computes for a model that offers `fused_filter_inputs` (FusedInputs: the VRNN's
LSTM backbone or the SRNN's, see filter_kernel.c), with the same random numbers in the same order for the
proposals: eps (T, R, H) is drawn from torch's global generator as the models' steps draw it (one draw of
R x H per step equals one draw of T x R x H, H being a multiple of 16), so without resampling (ELBO, IWAE)
the two paths give the same bound under one seed. Resampling draws its uniforms from the engine's generator
up front (multinomial (T, B, N), systematic (T, B)) and picks ancestors by inverse CDF, so FIVO's draws
differ from the PyTorch path's (torch.multinomial) but follow the same law. `usable` says when it applies:
float32 on the CPU, latent size a multiple of 16, the ESS criterion or none, a C compiler, and at most
MAX_ROWS particles x sequences (beyond that the loop's large products are faster).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import torch

from core.generation.c_kernels import as_numpy, buildable, load, pad, panels, pointer_fields
from core.inference.resampling import EssCriterion
from core.models.sequential import FusedInputs

SOURCE = Path(__file__).parent / "filter_kernel.c"
# The step layers, (in, out) weights: "recurrent" reads the previous state ([enc_z, h] (2H, 4H) for the VRNN,
# enc_z (H, 2H) for the SRNN); "from_h" (H, 3H) is the VRNN's alone. Each but recurrent and emission_z has "NAME/b".
LAYERS = ("recurrent", "from_h", "prior", "proposal", "enc_in", "enc_out", "emission_z", "emission")
SHORT = dict(zip(LAYERS, ("rec", "fh", "p", "q", "ei", "eo", "ez", "em"), strict=True))  # the kernel's names
BIASED = ("from_h", "prior", "proposal", "enc_in", "enc_out", "emission")
# What the forward pass saves per step, and the width of each row in units of H (E for "par"); the LSTM's
# arrays are the VRNN's alone, and its "rec" is 2H wide where the SRNN's is H.
SAVED = {"rec": 2, "c_prev": 1, "gates": 4, "c": 1, "h": 1, "a": 3, "p": 2, "q": 2, "z": 1, "e1": 1, "enc_z": 1,
         "eh": 1, "par": 0}
LSTM_ONLY = ("c_prev", "gates", "c", "h", "d_gates")
GRADS = {"d_gates": 4, "d_a": 3, "d_p": 2, "d_q": 2, "d_e1": 1, "d_enc_z": 1, "d_eh": 1, "d_par": 0}
MODES = {None: 0, "multinomial": 1, "systematic": 2}
# Above this many rows (particles x sequences) the engine's loop is the faster one: its products run through
# PyTorch's AVX-512 GEMMs, the kernel's through AVX2 tiles, and per-op overhead no longer dominates
# (bench/sequences.py: fused 1.5x the loop at 64 rows, 0.84x at 256). It also bounds the saved activations.
MAX_ROWS = 128


class _Filter(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int64) for n in ("B", "T", "N", "H", "D", "E", "EP", "gaussian", "mode", "lstm",
                                                     "saved_steps")]
                + [("threshold", ctypes.c_double)]
                + pointer_fields("lengths", "seq", "c_term", "x", "eps", "uniforms",
                                 *(f"w_{k}" for k in SHORT.values()), *(f"t_{k}" for k in SHORT.values()),
                                 *(f"b_{SHORT[k]}" for k in BIASED),
                                 *SAVED, "log_w", "log_w_end", "flags", "ancestors", "log_p_hat", "grad", *GRADS))


def _library() -> ctypes.CDLL:
    lib = load(SOURCE, "filter_kernel")
    for name in ("filter_forward", "filter_backward"):
        getattr(lib, name).argtypes = [ctypes.POINTER(_Filter)]
        getattr(lib, name).restype = None
    return lib


def usable(model: torch.nn.Module, x: torch.Tensor, particles: int, criterion: object, relaxed: bool) -> bool:
    """Whether `run` should filter x (B, T, D) through `model` with `particles` and this criterion (None or an
    EssCriterion): it computes the same thing there, and faster (at most MAX_ROWS rows)."""
    if not hasattr(model, "fused_filter_inputs") or relaxed or particles * x.shape[0] > MAX_ROWS:
        return False
    if criterion is not None and not isinstance(criterion, EssCriterion):
        return False
    p = next(model.parameters())
    return (x.device.type == "cpu" and p.device.type == "cpu" and x.dtype == torch.float32
            and p.dtype == torch.float32 and model.config.latent_size % 16 == 0 and buildable(_library))


@dataclass
class FusedResult:
    """What one fused filter run gives: the bound and what the kernel recorded (all detached but log_p_hat)."""

    log_p_hat: torch.Tensor  # (B,)
    eps: torch.Tensor  # (T, R, H) the proposals' standard normal noise
    uniforms: torch.Tensor | None  # (T, B, N) multinomial or (T, B) systematic; None without resampling
    log_weights: torch.Tensor  # (T, N, B) weights since the last resampling, before any reset
    resampled: torch.Tensor  # (T, B) bool
    ancestors: torch.Tensor  # (T, N, B) long, identity where not resampled


def _panels(w: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(K, N) -> zero-padded to (rows, cols), stored as cols/16 panels of (rows, 16): the kernels' layout."""
    return torch.from_numpy(panels(as_numpy(w), rows, cols))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _Kernel(torch.autograd.Function):
    """log p-hat (B,) of a model's FusedInputs; `run` (a dict) carries the fixed inputs and receives the record.
    Differentiable in seq, c_term and the layers' weights and biases (None for those a model lacks)."""

    @staticmethod
    def forward(ctx, run: dict, seq: torch.Tensor, c_term: torch.Tensor | None, *layers: torch.Tensor | None):
        b, t, d, n, h, e, lstm = run["B"], run["T"], run["D"], run["N"], run["H"], run["E"], run["lstm"]
        r, ep = n * b, pad(e)
        weights = dict(zip([*LAYERS, *(f"{k}/b" for k in BIASED)], layers, strict=True))
        keep = {}
        for layer, short in SHORT.items():
            w = weights[layer]
            if w is not None:
                k, m = w.shape
                keep[f"w_{short}"] = _panels(w, k, pad(m))
                keep[f"t_{short}"] = _panels(w.t(), pad(m), k)
        for layer in BIASED:
            bias = weights[f"{layer}/b"]
            if bias is not None:
                keep[f"b_{SHORT[layer]}"] = torch.nn.functional.pad(bias.detach(), (0, pad(len(bias)) - len(bias)))
        keep["seq"] = seq.detach().contiguous()
        keep["c_term"] = None if c_term is None else c_term.detach().contiguous()
        widths = {**SAVED, "rec": 2 if lstm else 1}
        steps = t if run["backward"] else 1  # without a backward pass one step's arrays are scratch
        saved = {k: torch.empty(steps, r, w * h if w else ep) for k, w in widths.items() if lstm or k not in LSTM_ONLY}
        record = {"log_w": torch.empty(t, n, b), "log_w_end": torch.empty(n, b),
                  "flags": torch.empty(t, b, dtype=torch.uint8), "ancestors": torch.empty(t, n, b, dtype=torch.long),
                  "log_p_hat": torch.empty(b, dtype=torch.float64)}
        fixed = {k: run[k] for k in ("lengths", "x", "eps", "uniforms")}
        spec = _Filter(B=b, T=t, N=n, H=h, D=d, E=e, EP=ep, gaussian=int(run["gaussian"]), mode=run["mode"],
                       lstm=int(lstm), saved_steps=steps, threshold=run["threshold"],
                       **{k: _ptr(v) for k, v in {**fixed, **keep, **saved, **record}.items()})
        _library().filter_forward(ctypes.byref(spec))
        run["record"] = record
        ctx.run, ctx.spec, ctx.keep, ctx.saved = run, spec, keep, saved
        ctx.present = [w is not None for w in layers]
        return record["log_p_hat"].float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        run, spec, saved = ctx.run, ctx.spec, ctx.saved
        b, t, n, h, lstm = run["B"], run["T"], run["N"], run["H"], run["lstm"]
        r, e = n * b, run["E"]
        grad = grad.detach().float().contiguous()
        d = {k: torch.empty(t, r, w * h if w else pad(e)) for k, w in GRADS.items() if lstm or k not in LSTM_ONLY}
        spec.grad = grad.data_ptr()
        for k, v in d.items():
            setattr(spec, k, v.data_ptr())
        _library().filter_backward(ctypes.byref(spec))

        def flat(v: torch.Tensor) -> torch.Tensor:
            return v.reshape(t * r, -1)

        def per_sequence(v: torch.Tensor) -> torch.Tensor:  # (T, R, K) -> (B, T, K), summed over particles
            return v.reshape(t, n, b, -1).sum(1).transpose(0, 1)

        relu, d_a = torch.relu, d["d_a"]
        x_dy = {"recurrent": (saved["rec"], d["d_gates"] if lstm else d_a[..., :2 * h]),
                "from_h": (saved.get("h"), d_a),  # the VRNN's alone
                "prior": (relu(saved["a"][..., :h]), d["d_p"]), "proposal": (relu(saved["a"][..., h:2 * h]), d["d_q"]),
                "enc_in": (saved["z"], d["d_e1"]), "enc_out": (relu(saved["e1"]), d["d_enc_z"]),
                "emission_z": (saved["enc_z"], d["d_eh"]), "emission": (relu(saved["eh"]), d["d_par"][..., :e])}
        present = dict(zip([*LAYERS, *(f"{k}/b" for k in BIASED)], ctx.present, strict=True))
        weights = [flat(x_dy[k][0]).t() @ flat(x_dy[k][1]) if present[k] else None for k in LAYERS]
        biases = [flat(x_dy[k][1]).sum(0) if present[f"{k}/b"] else None for k in BIASED]
        seq_grad = per_sequence(d["d_gates"] if lstm else d_a)
        return None, seq_grad, per_sequence(d_a[..., h:2 * h]) if lstm else None, *weights, *biases


def run(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor, particles: int, threshold: float | None,
        resampling: str, generator: torch.Generator) -> FusedResult:
    """Filter x (B, T, D) with lengths (B,) through `model` with N = particles: threshold None never resamples,
    else the ESS criterion at that threshold with `resampling` ("multinomial" or "systematic") ancestors."""
    steps = int(lengths.max())
    x = x[:, :steps].contiguous()
    inputs: FusedInputs = model.fused_filter_inputs(x, lengths)
    b, n, h = x.shape[0], particles, model.config.latent_size
    eps = torch.randn(steps, n * b, h, dtype=x.dtype)
    mode = MODES[resampling] if threshold is not None else 0
    uniforms = None
    if mode:
        shape = (steps, b, n) if resampling == "multinomial" else (steps, b)
        uniforms = torch.rand(shape, dtype=x.dtype, generator=generator)
    spec = {"B": b, "T": steps, "N": n, "H": h, "D": x.shape[2], "E": inputs.layers["emission"].shape[1],
            "lstm": inputs.lstm,
            "gaussian": model.config.emission == "gaussian", "mode": mode, "threshold": float(threshold or 0.0),
            "lengths": lengths.contiguous(), "x": x, "eps": eps, "uniforms": uniforms}
    ordered = [inputs.layers.get(k) for k in LAYERS] + [inputs.layers.get(f"{k}/b") for k in BIASED]
    spec["backward"] = torch.is_grad_enabled() and any(v is not None and v.requires_grad
                                                       for v in (inputs.seq, inputs.c_term, *ordered))
    log_p_hat = _Kernel.apply(spec, inputs.seq, inputs.c_term, *ordered)
    record = spec["record"]
    return FusedResult(log_p_hat=log_p_hat, eps=eps, uniforms=uniforms, log_weights=record["log_w"],
                       resampled=record["flags"].bool(), ancestors=record["ancestors"])

