"""Adam for E independent network copies, packed in one flat buffer.

All parameters of a network live in one ``[E, P]`` tensor and the per-layer tensors are views into
it, so one optimizer step is a handful of tensor ops whatever the number of layers. Adam is
elementwise, so copy e evolves exactly as it would alone. Updates are *ascent* directions (Chung's
raw weight changes); each parameter tensor has its own step size, interpolated linearly from
``lr_start`` to ``lr_end`` over ``decay_steps`` steps (the schedule of Chung's code), one number
or one per copy (:func:`rates`).

Why not ``torch.optim.Adam``: it computes the same update in another order (``exp_avg.lerp_``,
``sqrt(v) / sqrt(1 - beta2^t)``, a double step size ``lr / (1 - beta1^t)`` through ``addcdiv_``)
where this one computes ``m * beta1 + (1 - beta1) u``, ``sqrt(v / (1 - beta2^t))`` and a float32
per-element rate. The two agree after one step and drift apart in the last bits after that
(``tests/test_chung_rules.py::test_adam_ascent_matches_torch_adam`` holds them within float32
tolerance; run with ``torch.equal``, 100 steps of three seeds differ by up to 2.4e-7 in the
weights, torch 2.13.0, CPU). The Chung agents are trained by REINFORCE on sampled actions, so a
last-bit difference changes later samples and every seeded reproduction figure
(docs/chung_reproduction.md) would move: the seeded results are kept bit-identical, and this
optimizer stays. ``torch.optim.Adam`` would also need one parameter group per tensor, its ``lr``
rewritten before every step, for the linear schedule. (The rule ladder's ``adam`` rule,
``marl_net.rules.adam``, is new and computes Adam in torch's order, so it matches
``torch.optim.Adam`` (``tests/test_adam.py``).)
"""

from __future__ import annotations

from typing import Sequence

import torch

from marl_net.rules.reinforce import flatten, split


def pack(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One ``[E, P]`` buffer holding ``tensors`` (each ``[E, ...]``) and views of it shaped like them."""
    e = tensors[0].shape[0]
    if any(t.shape[0] != e for t in tensors):
        raise ValueError("every tensor needs the same leading copy dimension E")
    flat = flatten(list(tensors))
    return flat, split(flat, list(tensors))


def rates(flat: torch.Tensor, sizes: Sequence[int], per_tensor: Sequence) -> torch.Tensor:
    """Per-element step sizes: ``[P]`` when every tensor's rate is one number, ``[E, P]`` when some
    are given per copy (a sequence of ``E`` numbers, e.g. one grid value per copy when tuning)."""
    kw = dict(device=flat.device, dtype=flat.dtype)
    if all(isinstance(r, (int, float)) for r in per_tensor):
        return torch.cat([torch.full((n,), float(r), **kw) for n, r in zip(sizes, per_tensor)])
    e = flat.shape[0]
    cols = []
    for n, r in zip(sizes, per_tensor):
        r = torch.as_tensor(r, **kw).reshape(-1, 1)
        if r.shape[0] not in (1, e):
            raise ValueError(f"a per-copy step size needs one value per copy ({e}), got {r.shape[0]}")
        cols.append(r.expand(e, n))
    return torch.cat(cols, 1)


class Adam:
    """Adam ascent on a flat ``[E, P]`` buffer with per-tensor, linearly decayed step sizes."""

    def __init__(self, flat: torch.Tensor, sizes: Sequence[int], lr_start: Sequence[float],
                 lr_end: Sequence[float] | None = None, decay_steps: int = 1,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        lr_end = lr_start if lr_end is None else lr_end
        if not (len(sizes) == len(lr_start) == len(lr_end)):
            raise ValueError(f"give one learning rate per parameter tensor: {len(sizes)} tensors, "
                             f"{len(lr_start)} start and {len(lr_end)} end rates")
        if sum(sizes) != flat.shape[1]:
            raise ValueError(f"sizes add up to {sum(sizes)} but the buffer holds {flat.shape[1]} parameters")
        if decay_steps < 1:
            raise ValueError(f"decay_steps={decay_steps!r} must be >= 1")
        self.flat = flat
        self.lr_start = rates(flat, sizes, lr_start)
        self.lr_delta = rates(flat, sizes, lr_end) - self.lr_start
        self.decay_steps = int(decay_steps)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = torch.zeros_like(flat)
        self.v = torch.zeros_like(flat)
        self.t = 0
        self._lr_frac = 0.0
        self._lr = self.lr_start

    def learning_rates(self) -> torch.Tensor:
        frac = min(self.t, self.decay_steps) / self.decay_steps
        if frac != self._lr_frac:  # constant schedules (and the end of a decay) reuse the last rates
            self._lr = self.lr_start + self.lr_delta * frac
            self._lr_frac = frac
        return self._lr

    def step(self, update: torch.Tensor) -> torch.Tensor:
        """Apply the ascent direction ``update`` ``[E, P]``; returns the change made to the buffer."""
        if update.shape != self.flat.shape:
            raise ValueError(f"update has shape {tuple(update.shape)}; pass {tuple(self.flat.shape)}")
        lr = self.learning_rates()
        self.t += 1
        self.m.mul_(self.beta1).add_(update, alpha=1 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(update, update, value=1 - self.beta2)
        m_hat = self.m / (1 - self.beta1**self.t)
        denom = (self.v / (1 - self.beta2**self.t)).sqrt_().add_(self.eps)
        delta = m_hat.div_(denom).mul_(lr)
        self.flat.add_(delta)
        return delta
