"""Inner-task losses, exactly as in Cai & Cheng section 4, one value per network copy.

- MSE:            ``E = 1/(N R_L) * 1/2 * ||X^(L) - Y||^2``
- cross-entropy:  ``E = -1/N sum_i sum_r y_r log softmax(x_i^(L))_r`` (labels as class indices)
"""

from __future__ import annotations

import torch

LOSSES = {
    "mse": "1/(N R_L) * 1/2 * ||X - Y||^2 (Cai & Cheng, teacher-student)",
    "cross_entropy": "-1/N sum_i log softmax(x_i)[y_i] (Cai & Cheng, classification)",
}


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[E, N, R]`` outputs and targets -> ``[E]``."""
    n, r = output.shape[-2], output.shape[-1]
    return 0.5 * (output - target).pow(2).sum(dim=(-2, -1)) / (n * r)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[E, N, C]`` logits and ``[E, N]`` integer labels -> ``[E]``."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1).mean(dim=-1)


def compute(name: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if name == "mse":
        return mse(output, target)
    if name == "cross_entropy":
        return cross_entropy(output, target)
    raise ValueError(f"loss {name!r} is unknown; choose one of {sorted(LOSSES)}")
