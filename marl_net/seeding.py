"""Per-copy random streams.

Every one of the E network copies owns its own ``torch.Generator``, so copy ``e`` of a batched run
seeded ``s`` draws exactly what a single-copy run seeded ``s + e`` draws. This is what lets the
PettingZoo view (E = 1) and the fast view (E copies) be held equal step by step. The helpers loop
over copies (never over agents): E is small next to the work done per copy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def make_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per seed (per network copy)."""
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
        gens.append(g)
    return gens


def seed_from(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (numpy's SeedSequence hashing): streams keyed
    differently are independent, which is how train and held-out tasks stay disjoint."""
    return int(np.random.SeedSequence([int(k) & 0xFFFF_FFFF for k in keys]).generate_state(2, dtype=np.uint64)[0] >> 1)


def _per_copy(gens: Sequence[torch.Generator], shape: Sequence[int], dtype, device, draw) -> torch.Tensor:
    """``[E, *shape]`` with row e filled by ``draw(row, gens[e])`` in place: each copy's draws land
    straight in its row, no stacking (the in-place fills draw what ``torch.randn`` / ``rand`` /
    ``randint`` draw from the same generator)."""
    out = torch.empty((len(gens), *shape), dtype=dtype, device=gens[0].device)
    for row, g in zip(out, gens):
        draw(row, g)
    return out.to(device or gens[0].device)


def randn(gens: Sequence[torch.Generator], shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws ``[E, *shape]``, copy e from ``gens[e]``."""
    return _per_copy(gens, shape, dtype, device, lambda row, g: row.normal_(generator=g))


def rand(gens: Sequence[torch.Generator], shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) draws ``[E, *shape]``, copy e from ``gens[e]``."""
    return _per_copy(gens, shape, dtype, device, lambda row, g: row.uniform_(generator=g))


def randint(gens: Sequence[torch.Generator], high: int, shape: Sequence[int], device=None) -> torch.Tensor:
    """Integers in [0, high) ``[E, *shape]`` (int64), copy e from ``gens[e]``."""
    return _per_copy(gens, shape, torch.long, device, lambda row, g: row.random_(0, high, generator=g))


def draw_minibatch(gens: Sequence[torch.Generator], inputs: torch.Tensor, targets: torch.Tensor, batch_size: int,
                   copies: Sequence[int] | None = None):
    """A minibatch per copy: ``batch_size`` rows of copy e's ``inputs [E, n, d]`` and ``targets``
    (``[E, n, out]`` or class labels ``[E, n]``), drawn with replacement from ``gens[e]``; with
    ``copies``, only for those copies (``gens[i]`` is copy ``copies[i]``'s)."""
    idx = randint(gens, inputs.shape[1], (batch_size,), device=inputs.device)
    return take_minibatch(inputs, targets, idx, copies)


def take_minibatch(inputs: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor,
                   copies: Sequence[int] | torch.Tensor | None = None):
    """Rows ``idx [E', B]`` of each copy's ``inputs [E, n, d]`` and ``targets`` (``[E, n, out]`` or
    class labels ``[E, n]``): of every copy, or with ``copies`` of those copies, without gathering
    their data sets first. One ``index_select`` over the flattened copies (``torch.gather`` with a
    broadcast index is several times slower on CPU)."""
    total, n = inputs.shape[0], inputs.shape[1]
    offsets = torch.arange(total) if copies is None else torch.as_tensor(copies, dtype=torch.long)
    rows = (idx + offsets.to(inputs.device).unsqueeze(1) * n).reshape(-1)
    x = inputs.reshape(total * n, -1).index_select(0, rows).view(*idx.shape, -1)
    y = targets.reshape(total * n, -1).index_select(0, rows).view(*idx.shape, *targets.shape[2:])
    return x, y
