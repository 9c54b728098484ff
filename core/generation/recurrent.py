"""Generation from a recurrent model (the wayback family) one sample at a time, O(1) work per sample.

Follows the stepper protocol of the WaveNet steppers:

    stepper.prime(tokens)             # (B, P) known prefix -> logits (B, Q, P), or None with logits=False
    stepper.step(prev)                # prev (B,) = the previous token (None at t = 0) -> logits (B, Q)
    stepper.sample(n, temperature, top_k, observed)   # the next n tokens (B, n)

The stepper keeps the recurrent state, the tokens of the chunk in progress and the chunk head's
context; the model is only read (running batch-norm statistics, no gradient), so one loaded model
serves any number of steppers. A recurrent step runs when a chunk begins; the samples inside a chunk
cost one pass of the small chunk head each.
"""

from __future__ import annotations

import torch

from core.generation.sampling import check_sampling_args
from core.generation.stepper import SamplingLoop, register_stepper
from core.models.wayback import RecurrentState, Wayback


@register_stepper("wayback", "recurrent")
class RecurrentStepper(SamplingLoop):
    """Step a `Wayback` model sample by sample; equals its full forward (in evaluation) at every step."""

    rank = 1  # the one stepper of its family

    @staticmethod
    def unusable(model: torch.nn.Module) -> str | None:
        return None

    def __init__(self, model: Wayback, batch: int, cond=None, seed: int | None = None):
        if cond is not None:
            raise ValueError("the wayback family has no conditioning: pass cond=None")
        if not (isinstance(batch, int) and batch >= 1):
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        self.model, self.batch = model, batch
        self.chunk = model.config.chunk_size
        p = next(model.parameters())
        self._init_sampling(seed, p.device)
        self.state: RecurrentState = model.zero_state(batch)
        self.current = torch.zeros(batch, 0, dtype=torch.long, device=p.device)  # the chunk so far (B, j)
        self.context: torch.Tensor | None = None  # the chunk head's context for the chunk in progress
        self.t = 0

    @torch.no_grad()
    def prime(self, tokens: torch.Tensor, logits: bool = False) -> torch.Tensor | None:
        """tokens (B, P) -> logits (B, Q, P) (None if not `logits`); the next step() takes prev = tokens[:, -1].

        The complete chunks before the one holding the last token go through the full forward; the
        rest is the chunk in progress.
        """
        if self.t != 0:
            raise ValueError("prime() must come before the first step()")
        if tokens.dim() != 2 or tokens.shape[0] != self.batch or tokens.shape[1] == 0:
            raise ValueError(f"prime tokens must be (B={self.batch}, P>0), got {tuple(tokens.shape)}")
        head = (tokens.shape[1] - 1) // self.chunk * self.chunk
        out = []
        if head:
            full, self.state = self.model(tokens[:, :head], self.state, batch_stats=False)
            out.append(full)
        self._begin_chunk()
        part = tokens[:, head:]
        if logits:
            out.append(self.model.head(self.context, part).transpose(1, 2))
        self.current, self.prev, self.t = part[:, :-1], tokens[:, -1], tokens.shape[1]
        return torch.cat(out, dim=2) if logits else None

    @torch.no_grad()
    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """prev (B,) = x_{t-1} (None at t = 0) -> logits (B, Q) of x_t."""
        if self.t > 0:
            if prev is None:
                raise ValueError("step() needs the previous token after the first step")
            self.current = torch.cat([self.current, prev.view(-1, 1).to(self.current)], dim=1)
            if self.current.shape[1] == self.chunk:
                self.state = RecurrentState(self.state.time, self.state.layers, self.current)
                self.current = self.current[:, :0]
                self.context = None
        if self.context is None:
            self._begin_chunk()
        j = self.current.shape[1]
        tokens = torch.cat([self.current, self.current.new_zeros(self.batch, 1)], dim=1)  # x_t itself is unseen
        logits = self.model.head(self.context, tokens)[:, j]
        self.t += 1
        return logits

    def _begin_chunk(self) -> None:
        """One recurrent step on the previous chunk; the head's context for the chunk that starts."""
        h, self.state = self.model.step_context(self.state)
        self.context = self.model.output_net(h, False)


def continuations(model: Wayback, primers: list[torch.Tensor], n: int, temperature: float = 1.0,
                  top_k: int | None = None, seed: int | None = None) -> list[torch.Tensor]:
    """The seed's sampling: run each primer (P_i,) through the model, then draw n samples after it.

    Returns one LongTensor (P_i + n,) per primer, starting with the primer itself. Primers of different
    lengths run one after another, each in its own stepper (seed + i when seeded).
    """
    check_sampling_args(temperature, top_k)
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    out = []
    for i, primer in enumerate(primers):
        primer = torch.as_tensor(primer, dtype=torch.long).reshape(1, -1)
        stepper = RecurrentStepper(model, 1, seed=None if seed is None else seed + i)
        if primer.shape[1]:
            stepper.prime(primer)
        out.append(torch.cat([primer[0], stepper.sample(n, temperature, top_k)[0]]))
    return out
