"""Inner-task losses, exactly as in Cai & Cheng section 4, one value per network copy.

- MSE:            ``E = 1/(N R_L) * 1/2 * ||X^(L) - Y||^2``
- cross-entropy:  ``E = -1/N sum_i sum_r y_r log softmax(x_i^(L))_r`` (labels as class indices)
- reinforce (RL inner tasks, ``marl_net.tasks.rl``): the REINFORCE surrogate
  ``-1/N sum_i A_i log softmax(x_i^(L))_{a_i}``, targets ``[E, N, 2]`` holding the sampled action
  ``a_i`` and its advantage ``A_i`` (reward minus the running baseline); its gradient is the
  policy-gradient estimate. (The RL task's reported loss is the negative mean reward.)
"""

from __future__ import annotations

import torch

LOSSES = {
    "mse": "1/(N R_L) * 1/2 * ||X - Y||^2 (Cai & Cheng, teacher-student)",
    "cross_entropy": "-1/N sum_i log softmax(x_i)[y_i] (Cai & Cheng, classification)",
    "reinforce": "-1/N sum_i A_i log softmax(x_i)[a_i], targets (a_i, A_i) (REINFORCE surrogate, RL tasks)",
}


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[E, N, R]`` outputs and targets -> ``[E]``."""
    n, r = output.shape[-2], output.shape[-1]
    return 0.5 * (output - target).pow(2).sum(dim=(-2, -1)) / (n * r)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[E, N, C]`` logits and ``[E, N]`` integer labels -> ``[E]``."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1).mean(dim=-1)


def reinforce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[E, N, C]`` logits and ``[E, N, 2]`` targets (action, advantage) -> ``[E]``."""
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., 0].long().unsqueeze(-1)).squeeze(-1)
    return -(targets[..., 1] * logp).mean(dim=-1)


def compute(name: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if name == "mse":
        return mse(output, target)
    if name == "cross_entropy":
        return cross_entropy(output, target)
    if name == "reinforce":
        return reinforce(output, target)
    raise ValueError(f"loss {name!r} is unknown; choose one of {sorted(LOSSES)}")
