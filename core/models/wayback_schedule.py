"""When each recurrent layer updates and how far back its gradient reaches: pure Python, no torch.

The wayback seed's four animations (full backprop, truncated, multi-scale, multi-scale truncated)
are all drawings of one `Schedule`; the wayback model (core/models/wayback.py) asks the same
object what to update, in which order, and where to cut the gradient, so the picture a page
draws and the model that trains can never disagree.

Time is counted in *steps*: one step consumes one chunk of `chunk_size` samples.

    stack:   every layer updates every step, bottom to top; layer i reads the layer below
             (already updated this step), or with vskip every other layer.
    wayback: layer i updates at step s iff s mod P_i == 0, P_i = periods[0] * ... * periods[i]
             (counted bottom to top); within a step the due layers update top down; layer i
             reads the layers below and above it (with vskip: every other layer).

Truncation. Layer i's gradient span is span_i = boundaries[i] * P_i steps (stack: every layer
spans the segment, max(boundaries) steps). The steps are cut into blocks [k span_i, (k+1) span_i)
counted from the start of the stream, and at the first step of each block layer i's carried state
is detached before anyone reads it. So a loss at step t reaches layer i's updates in
[block_start_i(t), t]: boundaries[i] of its own steps for a loss at the end of a block, and never
more. The blocks of lower layers refine those of higher ones (span_{i+1} is a multiple of span_i),
a read of a higher layer by a lower one always carries gradient, and a read of a lower layer by a
higher one carries gradient only when both have the same span (else it would reopen the lower
layer's history beyond its boundary). That makes the reach exact across layers, and the states
that must be kept for backprop about constant per layer: boundaries[i] for layer i.

A segment (one truncated-backprop batch) is `segment_steps` = the top layer's span, so segments
start and end on cycle boundaries of every layer, and the longest gradient span is
span_top * chunk_size samples (the seed's 100 x 1 x 1 x 10 x 4 = 4,000).

For drawing, a boundary may be None (never cut: full backprop over the drawn length); a model
config always gives integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from core.validation import is_int, need

LAYOUTS: tuple[str, ...] = ("stack", "wayback")


@dataclass(frozen=True)
class Schedule:
    """The update and truncation pattern of a stack of recurrent layers (index 0 = bottom).

    layout:     "stack" or "wayback"
    periods:    per layer, how many updates of the layer below make one of its cycles
                (stack: all 1; None = all 1)
    boundaries: per layer, how many of its own steps its gradient spans (None entries: never cut)
    chunk_size: samples per step (for spans in samples)
    vskip:      every layer reads every other layer
    carry:      False: when layer i+1 updates, layer i's state is re-initialised from it
    """

    layout: str
    periods: tuple[int, ...] | None
    boundaries: tuple[int | None, ...]
    chunk_size: int = 1
    vskip: bool = False
    carry: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "boundaries", tuple(self.boundaries))
        n = len(self.boundaries)
        periods = (1,) * n if self.periods is None else tuple(self.periods)
        object.__setattr__(self, "periods", periods)
        check_schedule(self.layout, list(periods), list(self.boundaries), self.chunk_size)

    # --- sizes -------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return len(self.boundaries)

    @cached_property
    def layer_periods(self) -> tuple[int, ...]:
        """P_i: steps between two updates of layer i (stack: all 1)."""
        return tuple(math.prod(self.periods[: i + 1]) for i in range(self.depth))

    @cached_property
    def spans(self) -> tuple[int | None, ...]:
        """span_i: the steps of one gradient block of layer i (None: never cut)."""
        if self.layout == "stack":
            b = None if None in self.boundaries else max(self.boundaries)
            return (b,) * self.depth
        return tuple(None if b is None else b * p for b, p in zip(self.boundaries, self.layer_periods, strict=True))

    @property
    def segment_steps(self) -> int | None:
        """Steps of one truncated-backprop segment: the top layer's span (None: never cut)."""
        return self.spans[-1]

    @property
    def states_held(self) -> tuple[int | None, ...]:
        """Per layer, the most of its states a loss's gradient passes through (memory for backprop)."""
        if self.layout == "stack":
            return self.spans
        return self.boundaries

    @property
    def memory(self) -> int | None:
        """States held for backprop, summed over layers (None: grows with the sequence)."""
        held = self.states_held
        return None if None in held else sum(held)

    @property
    def longest_span_samples(self) -> int | None:
        """How many samples the longest gradient path spans: segment_steps * chunk_size."""
        s = self.segment_steps
        return None if s is None else s * self.chunk_size

    # --- the rules the model follows ------------------------------------------------------------

    def updates(self, step: int) -> list[int]:
        """The layers that update at `step`, in the order they update."""
        if self.layout == "stack":
            return list(range(self.depth))
        return [i for i in reversed(range(self.depth)) if step % self.layer_periods[i] == 0]

    def reads(self, layer: int) -> list[int]:
        """The other layers whose state `layer`'s transition reads (the bottom one also reads the input)."""
        if self.vskip:
            return [j for j in range(self.depth) if j != layer]
        if self.layout == "stack":
            return [layer - 1] if layer > 0 else []
        return [j for j in (layer - 1, layer + 1) if 0 <= j < self.depth]

    def cut(self, layer: int, step: int) -> bool:
        """Whether `layer`'s carried state is detached at the start of `step` (a block starts)."""
        span = self.spans[layer]
        return span is not None and step % span == 0

    def read_live(self, reader: int, layer: int) -> bool:
        """Whether `reader` reading `layer`'s state passes gradient back to it."""
        return layer > reader or self.spans[layer] == self.spans[reader]

    def reinit(self, layer: int, step: int) -> bool:
        """carry=False: whether `layer` restarts from the layer above at `step` (that layer updates)."""
        return (not self.carry and self.layout == "wayback" and layer + 1 < self.depth
                and step % self.layer_periods[layer + 1] == 0)

    def block_start(self, layer: int, step: int) -> int:
        """The first step of `layer`'s gradient block containing `step` (0 when never cut)."""
        span = self.spans[layer]
        return 0 if span is None else step - step % span

    # --- what a page draws ----------------------------------------------------------------------

    def update_grid(self, steps: int) -> list[list[bool]]:
        """[layer][step]: whether the layer updates at that step, for steps 0 .. steps-1."""
        _check_steps(steps)
        return [[i in self.updates(s) for s in range(steps)] for i in range(self.depth)]

    def reach(self, loss_step: int) -> list[list[int]]:
        """For the loss at `loss_step` (it reads every layer after that step's updates): per layer,
        the steps whose update of that layer receives gradient, ascending.

        Computed by walking the dependency graph backwards along the edges that carry gradient
        (the same rules `updates`, `reads`, `cut`, `read_live` and `reinit` give the model), so it
        is exact for any configuration, carry=False included.
        """
        _check_steps(loss_step + 1)
        latest = [[-1] * self.depth for _ in range(loss_step + 1)]  # latest[s][j]: j's last update <= s
        last = [-1] * self.depth
        edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for s in range(loss_step + 1):
            cut_before = [self.cut(j, s) for j in range(self.depth)]
            for i in self.updates(s):
                parents = []
                if self.reinit(i, s):
                    parents.append((i + 1, last[i + 1]))
                elif last[i] >= 0 and not cut_before[i]:
                    parents.append((i, last[i]))
                for j in self.reads(i):
                    if last[j] >= 0 and self.read_live(i, j) and not (cut_before[j] and last[j] < s):
                        parents.append((j, last[j]))
                edges[(i, s)] = parents
                last[i] = s
            latest[s] = list(last)
        seen: set[tuple[int, int]] = set()
        todo = [(j, latest[loss_step][j]) for j in range(self.depth) if latest[loss_step][j] >= 0]
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            todo.extend(edges[node])
        return [sorted(s for j, s in seen if j == i) for i in range(self.depth)]

    def grid(self, steps: int, loss_step: int | None = None) -> dict:
        """Everything one frame of the time x layer picture needs, for steps 0 .. steps-1:

        updates:  [layer][step] bool, the layer updates there
        order:    [step] the updating layers in update order
        gradient: [layer][step] bool, that update gets gradient from the loss at loss_step
                  (default the last step)
        held:     per layer, the states a loss's gradient can pass through (None: all of them)
        memory:   their sum; longest_span_steps / longest_span_samples: the longest gradient path
        """
        _check_steps(steps)
        loss_step = steps - 1 if loss_step is None else loss_step
        if not (is_int(loss_step) and 0 <= loss_step < steps):
            raise ValueError(f"loss_step must be an integer in [0, {steps}), got {loss_step!r}")
        reach = self.reach(loss_step)
        return {
            "updates": self.update_grid(steps),
            "order": [self.updates(s) for s in range(steps)],
            "gradient": [[s in set(r) for s in range(steps)] for r in reach],
            "held": list(self.states_held),
            "memory": self.memory,
            "longest_span_steps": self.segment_steps,
            "longest_span_samples": self.longest_span_samples,
        }


def _check_steps(steps: object) -> None:
    if not (is_int(steps) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def check_schedule(layout: str, periods: Sequence[int], boundaries: Sequence[int | None],
                   chunk_size: int = 1) -> None:
    """ConfigError naming the field when layout, periods, boundaries or chunk_size cannot make a schedule."""
    need(layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {layout!r}")
    need(is_int(chunk_size) and chunk_size >= 1, f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    need(len(boundaries) >= 1, "boundaries must give one entry per layer (at least one)")
    need(len(periods) == len(boundaries),
         f"periods has {len(periods)} entries but boundaries has {len(boundaries)}: give one per layer")
    for i, p in enumerate(periods):
        need(is_int(p) and p >= 1, f"periods[{i}] must be an integer >= 1, got {p!r}")
    for i, b in enumerate(boundaries):
        need(b is None or (is_int(b) and b >= 1), f"boundaries[{i}] must be an integer >= 1, got {b!r}")
    if layout == "stack":
        need(all(p == 1 for p in periods),
             f"periods must all be 1 for layout 'stack' (every layer updates every step), got {list(periods)}")
        return
    for i in range(len(boundaries) - 1):
        b, above = boundaries[i], boundaries[i + 1]
        need(b is None or b >= periods[i + 1],
             f"boundaries[{i}] = {b} is shorter than one cycle of the layer above (periods[{i + 1}] = "
             f"{periods[i + 1]}): layer {i} must backprop through at least {periods[i + 1]} of its steps")
        need(b is not None or above is None,
             f"boundaries[{i + 1}] must be None (never cut) when boundaries[{i}] is")
        if b is not None and above is not None:
            span = b * math.prod(periods[: i + 1])
            span_above = above * math.prod(periods[: i + 2])
            need(span_above % span == 0,
                 f"boundaries[{i + 1}]: layer {i + 1}'s gradient span boundaries[{i + 1}] x "
                 f"periods[0..{i + 1}] = {span_above} steps must be a multiple of layer {i}'s "
                 f"{span} steps, so that its blocks contain whole blocks of the layer below")


def seed_animations(length: int = 27) -> dict[str, tuple[Schedule, int]]:
    """The seed's four animations as (schedule, steps drawn): two layers over 27 steps for full and
    truncated backprop, three layers of strides 1, 3, 9 for the multi-scale pair."""
    return {
        "full backprop": (Schedule("stack", None, (None, None)), length),
        "truncated": (Schedule("stack", None, (9, 9)), length),
        "multi-scale": (Schedule("wayback", (1, 3, 3), (None, None, None)), length),
        "multi-scale truncated": (Schedule("wayback", (1, 3, 3), (3, 3, None)), length),
    }
