"""Small pieces the hand-designed rules share: per-copy hyperparameters and input checks."""

from __future__ import annotations

import math
from typing import Sequence

import torch


DEFAULT_SIGMA = 1.0e-4  # variance of NP's and WP's perturbations; noise std 0.01


class PerCopy:
    """A hyperparameter given as one float or one float per network copy (step-size sweeps run the
    grid as extra copies). ``tensor(E)`` returns it as a float32 tensor ``[E]``, the exact values
    the trainer and the in-env policy both multiply by."""

    def __init__(self, name: str, value: float | Sequence[float], positive: bool = True):
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
        if not values:
            raise ValueError(f"{name}=[]: give one value, or one per copy")
        for v in values:
            if not math.isfinite(v) or (positive and not v > 0):
                raise ValueError(f"{name}={value!r}: every value must be a finite number{' > 0' if positive else ''}")
        self.name = name
        self.values = values

    def tensor(self, copies: int) -> torch.Tensor:
        if len(self.values) == 1:
            return torch.full((copies,), self.values[0], dtype=torch.float32)
        if len(self.values) != copies:
            raise ValueError(f"{self.name} has {len(self.values)} values for {copies} copies; give one value or one per copy")
        return torch.tensor(self.values, dtype=torch.float32)

    def __repr__(self) -> str:
        return repr(self.values[0] if len(self.values) == 1 else self.values)


def check_deterministic(config, rule: str) -> None:
    """NP, WP and SGD replay or differentiate the forward pass: they need deterministic units."""
    if "bernoulli" in (config.hidden_activation, config.output_activation):
        raise ValueError(f"rule {rule!r} needs deterministic units; use hidden_activation='tanh' (or relu/sigmoid), "
                         "or the 'weight_max' rule for Bernoulli units")


def check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma={sigma!r}: the perturbation variance must be a positive number (e.g. 1e-4)")
    return sigma


def coefficient(lr: torch.Tensor, sigma: float) -> torch.Tensor:
    """``eta / sigma`` per copy ``[E]`` (float32): the factor of Cai & Cheng's NP and WP updates."""
    return (lr.double() / check_sigma(sigma)).float()


def perturbation_update(error: torch.Tensor, eligibility: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``eta/sigma * (E - E_pert) * eligibility`` for one layer, evaluated as
    ``eligibility * (error * coef)``; ``error`` and ``coef`` broadcast against ``eligibility``.
    Trainer and policy both call this, so they round identically."""
    view = lambda t: t.view(-1, *([1] * (eligibility.dim() - 1))) if t.dim() == 1 else t  # noqa: E731
    return eligibility * (view(error) * view(coef))


class PerturbationRule:
    """NP and WP as rules: ``dW_l = eta/sigma * (E - E_pert) * eligibility_l``, from the signal the
    subclass's ``signal(ctx, sigma)`` draws (and caches, so observation features see the same one).
    ``lr``: eta (one float or one per copy); ``sigma``: the noise variance."""

    name: str

    def __init__(self, lr: float | list[float] = 0.03, sigma: float = DEFAULT_SIGMA):
        self.lr = PerCopy("lr", lr, positive=True)
        self.sigma = check_sigma(sigma)

    @staticmethod
    def signal(ctx, sigma: float):
        raise NotImplementedError

    def start(self, config, copies: int) -> None:
        check_deterministic(config, self.name)
        self.coef = coefficient(self.lr.tensor(copies), self.sigma)

    def update(self, ctx) -> list[torch.Tensor]:
        s = self.signal(ctx, self.sigma)
        coef = self.coef.to(s.error.device)
        return [perturbation_update(s.error, e, coef) for e in s.eligibility]
