"""Adam (Kingma & Ba 2015) on the backprop gradient, batched over E copies: the strongest
gradient baseline of the rule ladder's gradient level; and ``dfa_adam``, the same Adam on direct
feedback alignment's update direction (``feedback_eligibility``, no weight transport): the
feedback level's base (``marl_net.base_rules``).

    m_t = beta1 m_{t-1} + (1 - beta1) g_t          v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    dW_t = -eta / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

computed as ``torch.optim.Adam`` computes it (the same operations in the same order, float32), with
one step size per copy so that a step-size grid runs as extra copies. Adam is elementwise, so one
tensor ``[E, rows, cols]`` per layer holding every copy gives each copy what a separate
``torch.optim.Adam`` over that copy alone gives: ``tests/test_adam.py`` replays the gradients a
batched run saw through one ``torch.optim.Adam`` per copy and finds the same weights step by step.
The gradient is the env's privileged ``gradient`` feature (:meth:`marl_net.context.StepContext.gradient`),
as SGD's is; ``dfa_adam`` takes the local ``feedback_eligibility`` instead, its feedback matrices
drawn as DFA's are (``marl_net.rules.trainer``). Biases (``bias=True``, the last weight-space
column) are updated like weights.

Run it::

    from marl_net.config import EnvConfig
    from marl_net.rules.registry import run_rule
    run = run_rule("adam", EnvConfig(task="teacher_student"), seeds=[0, 1, 2], steps=500, lr=0.01)
"""

from __future__ import annotations

import math

import torch

from marl_net.context import StepContext
from marl_net.feedback_alignment import check_mode, eligibility
from marl_net.rules.feedback_alignment import check_feedback_rule
from marl_net.rules.common import PerCopy, check_deterministic

DEFAULT_BETAS = (0.9, 0.999)
DEFAULT_EPS = 1.0e-8
# dfa_adam's first-moment decay, chosen on the train split (docs/ladder.md, "Base rules"): with
# torch's 0.9 DFA-Adam ends 50-update teacher-student at 1.9x DFA's loss, with 0.7 at DFA's
DFA_ADAM_BETA1 = 0.7


class Adam:
    """Adam on the backprop gradient, or with ``feedback="dfa"`` (or ``"fa"``) on that feedback
    pathway's update direction, ``feedback_eligibility`` (``dfa_adam``: no weight transport).
    ``lr``: eta, one float or one per copy; ``beta1``, ``beta2``, ``eps`` as in ``torch.optim.Adam``
    (its defaults)."""

    def __init__(self, lr: float | list[float] = 0.01, beta1: float = DEFAULT_BETAS[0],
                 beta2: float = DEFAULT_BETAS[1], eps: float = DEFAULT_EPS, feedback: str | None = None):
        self.feedback = None if feedback is None else check_mode(feedback)  # the trainer draws its matrices
        self.name = "adam" if feedback is None else f"{feedback}_adam"
        self.lr = PerCopy("lr", lr, positive=True)
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise ValueError(f"{name}={value!r} must be in [0, 1), e.g. 0.9 (beta1) or 0.999 (beta2)")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps={eps!r} must be a positive number, e.g. 1e-8")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def start(self, config, copies: int) -> None:
        if self.feedback is None:
            check_deterministic(config, self.name)
        else:
            check_feedback_rule(config, self.name)
        self.lr_t = self.lr.tensor(copies).double()
        self.step = 0
        self.exp_avg: list[torch.Tensor] | None = None
        self.exp_avg_sq: list[torch.Tensor] | None = None

    def update(self, ctx: StepContext) -> list[torch.Tensor]:
        grads = ctx.gradient() if self.feedback is None else eligibility(ctx)
        if self.exp_avg is None:
            self.exp_avg = [torch.zeros_like(g) for g in grads]
            self.exp_avg_sq = [torch.zeros_like(g) for g in grads]
        self.step += 1
        bias_correction1 = 1 - self.beta1 ** self.step
        bias_correction2_sqrt = (1 - self.beta2 ** self.step) ** 0.5
        # torch.optim.Adam's step size lr / bias_correction1 is a double, applied in the param's dtype
        step_size = (self.lr_t / bias_correction1).float()
        out = []
        for g, m, v in zip(grads, self.exp_avg, self.exp_avg_sq):
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            out.append(-step_size.to(g.device).view(-1, *([1] * (g.dim() - 1))) * m / denom)
        return out


def dfa_adam(lr: float | list[float] = 0.01, beta1: float = DFA_ADAM_BETA1) -> Adam:
    """Adam on DFA's update direction, beta1 :data:`DFA_ADAM_BETA1` by default (``torch.optim.Adam``'s
    defaults otherwise)."""
    return Adam(lr, beta1=beta1, feedback="dfa")
