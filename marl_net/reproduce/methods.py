"""The learning methods of Chung (2022), Table 1, by name.

Every method trains the same actor (64-32 hidden units, softmax output) with an update rule from
``marl_net.rules``; only the hidden units' credit assignment differs. All but Weight Max (without
traces) keep eligibility traces on the actor, as the paper's baselines do ("actor-critic with
eligibility traces"); Weight Max uses lambda = 0 as in the paper's public configs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from marl_net.rules.reinforce import Reinforce
from marl_net.rules.ste import STE, Backprop
from marl_net.rules.weight_max import WeightMax, WeightMaxTraces


@dataclass(frozen=True)
class RuleOptions:
    """Knobs a method may read: discount, trace lambda, Weight Max norm p and weight decay c,
    Thomas (2011) exploration probability."""

    gamma: float = 0.98
    lam: float = 0.8
    norm_p: float = 2.0
    weight_decay: float = 0.0
    explore_prob: float = 0.1


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # the row name of Chung's Table 1
    hidden_activation: str  # "bernoulli" or "relu"
    make_rule: Callable[[RuleOptions], object]
    thomas: bool = False  # Thomas (2011) random exploration of hidden units
    multi_step_only: bool = False  # not defined on one-step tasks (paper: "n.a." on the multiplexer)

    def explore_prob(self, opts: RuleOptions) -> float | None:
        return opts.explore_prob if self.thomas else None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("weight_max", "Weight Max", "bernoulli",
               lambda o: WeightMax(p=o.norm_p, weight_decay=o.weight_decay)),
        Method("weight_max_traces", "Weight Max w/ traces", "bernoulli",
               lambda o: WeightMaxTraces(gamma=o.gamma, lam=o.lam, p=o.norm_p, weight_decay=o.weight_decay),
               multi_step_only=True),
        Method("reinforce", "REINFORCE", "bernoulli", lambda o: Reinforce(trace_decay=o.gamma * o.lam)),
        Method("reinforce_thomas", "REINFORCE with Thomas (2011)", "bernoulli",
               lambda o: Reinforce(trace_decay=o.gamma * o.lam), thomas=True),
        Method("ste", "STE Backprop", "bernoulli", lambda o: STE(trace_decay=o.gamma * o.lam)),
        Method("backprop", "Backprop", "relu", lambda o: Backprop(trace_decay=o.gamma * o.lam)),
    )
}


def parse_methods(text: str) -> list[Method]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--methods {text!r} names no method; choose from {','.join(METHODS)}")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {','.join(METHODS)}")
    return [METHODS[n] for n in dict.fromkeys(names)]
