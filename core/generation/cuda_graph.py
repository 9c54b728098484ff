"""The cached step replayed from one CUDA graph: a whole WaveNet step in one launch on a GPU.

On a GPU the PyTorch cached step is a few hundred tiny kernels, each launched from Python; a
CUDA graph records them once and replays them with one call. A graph replays fixed kernels
on fixed memory, so everything that changes per step lives in device tensors the graph
reads and updates in place:

    t          (1,) long: the step; ring slots are offs + (t - j d) mod S, computed on device
    ring       (sum_l S_l, B, C_res): every layer's ring buffer, packed
    tokens     (B, K_in), prev (B,): the input tokens
    logits     (B, Q): the graph's output, copied out after each replay

`GraphStepper` runs that same in-place step eagerly on the CPU (no capture there), which is
how its indexing is tested without a GPU; on CUDA it captures the step on first use.
Sampling stays outside the graph (core.generation.sampling), so seeds behave as in the cached path.
"""

from __future__ import annotations

import torch

from core.conditioning import Cond
from core.generation.cached import CachedStepper
from core.generation.stepper import register_stepper
from core.models.wavenet import WaveNet


@register_stepper("wavenet", "graph")
class GraphStepper(CachedStepper):
    """CachedStepper whose state is all on the device and whose step replays a CUDA graph."""

    rank = 3

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        if next(model.parameters()).device.type == "cuda":
            return None
        return "the graph method replays a CUDA graph: it needs a model on a CUDA device"

    def __init__(self, model: WaveNet, batch: int, cond: Cond | None = None, seed: int | None = None):
        super().__init__(model, batch, cond, seed)
        dev = self.tokens.device
        offs = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.ring = torch.zeros(sum(self.sizes), batch, model.config.residual_channels, device=dev,
                                dtype=self.bufs[0].dtype)
        self.bufs = [self.ring[o : o + s] for o, s in zip(offs, self.sizes, strict=True)]  # views: prime fills ring
        taps = [(o, j * d, s) for o, d, s in zip(offs, self.dilations, self.sizes, strict=True)
                for j in range(1, self.k)]
        self.read_base, self.read_back, self.read_size = (torch.tensor(v, device=dev) for v in zip(*taps, strict=True))
        self.write_base, self.write_size = torch.tensor(offs, device=dev), torch.tensor(self.sizes, device=dev)
        self.t_dev = torch.zeros(1, dtype=torch.long, device=dev)
        self.prev_in = torch.full((batch,), self.q, dtype=torch.long, device=dev)
        self.logits = torch.zeros(batch, model.config.quantization_levels, device=dev, dtype=self.ring.dtype)
        self.capture = dev.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None

    def prime(self, tokens: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        out = super().prime(tokens, logits)
        self.t_dev.fill_(self.t)
        return out

    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t=0) -> logits (B, Q) of x_t."""
        if self.model.local_proj is not None:
            self._local_frame()  # checked on the host: a graph cannot raise
        if prev is None:
            self.prev_in.fill_(self.q)
        else:
            self.prev_in.copy_(prev)
        if self.capture and self.graph is None:
            self.graph = self._capture()
        if self.graph is not None:
            self.graph.replay()
        else:
            self._static_step()
        self.t += 1
        return self.logits.clone()

    def _static_step(self) -> None:
        """The step on device state only: reads prev_in and t_dev, writes logits, advances t_dev."""
        self.logits.copy_(self._step(self.prev_in))
        self.t_dev.add_(1)

    def _capture(self) -> torch.cuda.CUDAGraph:
        """Record _static_step; the warm-up runs it for real, so the state is saved and put back."""
        saved = [x.clone() for x in (self.ring, self.tokens, self.t_dev)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._static_step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_step()
        for x, old in zip((self.ring, self.tokens, self.t_dev), saved, strict=True):
            x.copy_(old)
        return graph

    def _read_past(self) -> torch.Tensor:
        slots = self.read_base + torch.remainder(self.t_dev - self.read_back, self.read_size)
        return self.ring.index_select(0, slots)

    def _write(self, layer: int, h: torch.Tensor) -> None:
        slot = self.write_base[layer : layer + 1] + torch.remainder(self.t_dev, self.write_size[layer : layer + 1])
        self.ring.index_copy_(0, slot, h.unsqueeze(0))

    def _cond_now(self) -> torch.Tensor | None:
        total = self.class_cond
        if self.model.local_proj is not None:
            frame = torch.div(self.t_dev, self.model.config.local_hop, rounding_mode="floor")
            g = torch.addmm(self.local_b, self.cond.local.index_select(2, frame).squeeze(2), self.local_w)
            total = g if total is None else total + g
        return None if total is None else total.view(self.batch, len(self.bufs), -1)
