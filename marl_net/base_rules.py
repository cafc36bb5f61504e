"""Hand rules as the base under a learned rule's actions: the learned rule as a correction.

With ``EnvConfig(base_update=FEATURE, base_rate=r)`` every step a weight moves by
``action_scale * action + r * f``, ``f`` the per-synapse feature its agent observed
(``marl_net.core``). For the hand rules below a feature and a rate exist at which zero actions
*are* the rule (``tests/test_base_rules.py``, ``tests/test_base_update.py``):

=============  =================================  ============  ===============================
hand rule      ``base_update``                    ``base_rate`` exactly
=============  =================================  ============  ===============================
``sgd``        ``gradient``                       ``-lr``       bit for bit
``adam``       ``adam[gradient]``                 ``-lr``       to float rounding
``dfa``        ``feedback_eligibility``           ``-lr``       bit for bit (env ``feedback="dfa"``)
``dfa_adam``   ``adam0.7[feedback_eligibility]``  ``-lr``       to float rounding (env ``feedback="dfa"``;
                                                                beta1 ``DFA_ADAM_BETA1``)
``np``         ``np_update``                      ``lr / sigma`` to float rounding (sigma: the noise
                                                                variance, ``DEFAULT_SIGMA``)
``reinforce``  ``reinforce_update``               ``lr``        bit for bit
=============  =================================  ============  ===============================

A ladder level with a base (``marl_net.levels.Level.base``) meta-trains its rule over that hand
rule, the rate from the hand rule's step size tuned on the *train* split of the meta-training
setting, and runs on every held-out setting over the same hand rule at *that* setting's tuned step
size: with zero actions the learned rule is the tuned hand rule, and what it learns is a correction.

    from marl_net.base_rules import env_options
    EnvConfig(..., **env_options("adam", lr=0.01))   # base_update="adam[gradient]", base_rate=-0.01
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from marl_net.rules.adam import DFA_ADAM_BETA1
from marl_net.rules.node_perturbation import DEFAULT_SIGMA


@dataclass(frozen=True)
class BaseRule:
    rule: str  # the hand rule (marl_net.rules.registry)
    feature: str  # the per-synapse observation feature the rule scales
    sign: float  # base_rate = sign * lr / scale
    scale: float = 1.0

    def rate(self, lr: float) -> float:
        return self.sign * float(lr) / self.scale


BASES: dict[str, BaseRule] = {b.rule: b for b in (
    BaseRule("sgd", "gradient", -1.0),
    BaseRule("adam", "adam[gradient]", -1.0),
    BaseRule("dfa", "feedback_eligibility", -1.0),
    BaseRule("dfa_adam", f"adam{DFA_ADAM_BETA1:g}[feedback_eligibility]", -1.0),
    BaseRule("np", "np_update", 1.0, DEFAULT_SIGMA),
    BaseRule("reinforce", "reinforce_update", 1.0),
)}


def check_base(rule: str) -> BaseRule:
    if rule not in BASES:
        raise ValueError(f"base rule {rule!r}: a learned rule can run over {list(BASES)}")
    return BASES[rule]


def base_of(config) -> BaseRule | None:
    """The hand rule ``config`` (an ``EnvConfig``) runs under its actions, or None: without a
    ``base_update``, or over a feature that is no hand rule's (its ``base_rate`` then stays fixed).
    ``feedback_eligibility`` is DFA's (and its Adam, DFA-Adam's) only where the env's feedback is ``"dfa"``."""
    feature = config.base_update
    if feature in (BASES["dfa"].feature, BASES["dfa_adam"].feature) and config.feedback != "dfa":
        return None
    return next((b for b in BASES.values() if b.feature == feature), None)


def without_base(config):
    """``config`` (an ``EnvConfig``) with no base rule under the actions: how hand rules run."""
    return config.replace(base_update=None, base_rate=0.0, correction="additive")


def env_options(rule: str, lr: float) -> dict:
    """``{"base_update", "base_rate"}`` that put hand rule ``rule`` at step size ``lr`` under the actions."""
    if not (math.isfinite(float(lr)) and float(lr) > 0):
        raise ValueError(f"base rule {rule!r}: step size {lr!r} must be a positive number (the rule's tuned lr)")
    base = check_base(rule)
    return {"base_update": base.feature, "base_rate": base.rate(lr)}
