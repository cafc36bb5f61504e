"""Feedback alignment (``fa``, Lillicrap et al. 2016) and direct feedback alignment (``dfa``, Nokland
2016) as rules, batched over E copies:

    dW_l = -eta * feedback_eligibility_l

the minibatch mean of presynaptic activity x the post-synaptic unit's feedback error x its
activation derivative (``marl_net.feedback_alignment``): the delta rule at the output units; at
hidden units the output error reaches them through fixed random feedback matrices (FA: layer by
layer in place of ``W^T``; DFA: straight from the output). The trainer
(``marl_net.rules.trainer``) draws each copy's matrices from its noise generator before the first
forward pass, where ``network_weights_v0`` draws them at reset with a feedback feature enabled, so
the rule here and the in-env policy (``marl_net.policies.hand_rules``) see the same matrices for
the same seed. Biases (``bias=True``) are updated like weights.

Run it::

    from marl_net.config import EnvConfig
    from marl_net.rules.registry import run_rule
    run = run_rule("dfa", EnvConfig(task="teacher_student"), seeds=[0, 1, 2], steps=50)
"""

from __future__ import annotations

import torch

from marl_net.context import StepContext
from marl_net.feedback_alignment import check_computable, check_mode, eligibility
from marl_net.rules.common import PerCopy
from marl_net.rules.sgd import sgd_update
from marl_net.tasks import TASKS


def check_feedback_rule(config, name: str) -> None:
    """Refuse a network or task loss where rule ``name``'s feedback signals are undefined."""
    check_computable(config.network_spec(), getattr(TASKS[config.task][0], "loss", None), what=f"rule {name!r}")


class FeedbackAlignment:
    """FA (``feedback="fa"``) or DFA (``"dfa"``). ``lr``: the step size eta, one float or one per copy."""

    def __init__(self, feedback: str, lr: float | list[float] = 0.3):
        self.feedback = check_mode(feedback)
        self.name = feedback
        self.lr = PerCopy("lr", lr, positive=True)

    def start(self, config, copies: int) -> None:
        check_feedback_rule(config, self.name)
        self.lr_t = self.lr.tensor(copies)

    def update(self, ctx: StepContext) -> list[torch.Tensor]:
        return [sgd_update(e, self.lr_t.to(e.device)) for e in eligibility(ctx)]


def fa(lr: float | list[float] = 0.3) -> FeedbackAlignment:
    return FeedbackAlignment("fa", lr)


def dfa(lr: float | list[float] = 0.3) -> FeedbackAlignment:
    return FeedbackAlignment("dfa", lr)
