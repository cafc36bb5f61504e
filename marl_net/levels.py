"""The information levels of the rule ladder: what a learned rule may observe, and whom it must beat.

A level is an observation set (the env's local defaults, ``DEFAULT_FEATURES``, plus the level's
signals) and its own hand-designed baselines, the rules that use the same information. Every level
is also compared with tuned SGD and tuned Adam (:data:`GRADIENT_METHODS`).

=============  =====================================================  ==================  ============
level          signals beyond the local defaults                      its own baselines   base
=============  =====================================================  ==================  ============
perturbation   ``np_eligibility`` (the node's noise x presynaptic      NP, WP              NP
               activity), ``np_error`` (the loss change the noise
               caused, broadcast): node perturbation's three factors;
               memory ``rms0.99[np_update]``
feedback       ``teaching_signal`` (the output units' error),         DFA, FA, DFA-Adam   DFA-Adam,
               ``feedback_error`` and ``feedback_eligibility``                            relative
               (hidden units' error through fixed random feedback
               weights, env ``feedback="dfa"``): no weight transport;
               memory ``ema0.9[feedback_eligibility]``
gradient       ``gradient`` (backprop's dE/dw; privileged): a          SGD, Adam           Adam,
               learned optimizer; memory ``ema0.9[gradient]``                             relative
=============  =====================================================  ==================  ============

Base: each level's learned rule is a correction to one of its own baselines
(``marl_net.base_rules``): every step a weight moves by the base rule's change, at its step size
tuned on the setting's train split, plus ``action_scale`` times the agent's action (additive:
``perturbation``), or times ``exp(action_scale * action)`` (:attr:`Level.correction` =
:func:`relative`: a learned per-synapse factor of the base's step; ``EnvConfig.correction``:
``gradient`` over Adam, ``feedback`` over DFA-Adam, Adam on DFA's update direction at beta1 0.7), the base and
the form chosen on the train split (docs/ladder.md). The base's feature (``np_update``,
``adam0.7[feedback_eligibility]``, ``adam[gradient]``) is among the level's observations;
``--set env.base_update=null`` meta-trains a level without a base (and with the additive form).
``base_factor`` scales the base's tuned step size in meta-training (1 for every level; with
another factor, a held-out setting's tuning tries the base at that fraction and at the full tuned
step, on the setting's train split, ``marl_net.heldout.learned_options``).

Memory: a level may add accumulator features (``marl_net.accumulators``: per-synapse moving
averages ``ema<d>[s]`` and RMS-normalized signals ``rms<d>[s]`` of its own signals), chosen where
they help on the *train* split only, by ``python experiments/level_features.py`` (its rows are in
docs/ladder.md); they are :attr:`Level.memory` and part of the level's observations.

Only ``gradient`` observes a feature the registry marks privileged. A level is *available* when
its features are registered and its env options exist in this build (:func:`unavailable_reason`);
the main job skips an unavailable level, or a hand rule this build lacks, and says why.

    from marl_net.levels import LEVELS
    LEVELS["feedback"].observations   # DEFAULT_FEATURES + the feedback signals
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from marl_net.observations import DEFAULT_FEATURES, is_privileged, resolve_feature

GRADIENT_METHODS = ("sgd", "adam")  # every level is also compared with these, tuned
NP_SIGNALS = ("np_eligibility", "np_error")
FEEDBACK_SIGNALS = ("teaching_signal", "feedback_error", "feedback_eligibility")


def relative(action_scale: float) -> dict[str, Any]:
    """A learned per-synapse factor ``exp(action_scale * action)`` of the base rule's step
    (``EnvConfig.correction``), chosen over the additive correction on the train split (docs/ladder.md)."""
    return {"correction": "relative", "action_scale": float(action_scale)}


@dataclass(frozen=True)
class Level:
    name: str
    description: str
    signals: tuple[str, ...]  # observation features beyond the local defaults
    baselines: tuple[str, ...]  # the hand-designed rules that use the same information
    env: Mapping[str, Any] = field(default_factory=dict)  # env settings the signals need
    memory: tuple[str, ...] = ()  # accumulator features of its signals, chosen on the train split
    base: str | None = None  # the baseline its learned rule corrects (marl_net.base_rules), or None
    base_factor: float = 1.0  # meta-training's base runs at this times its tuned step (chosen on the train split)
    correction: Mapping[str, Any] = field(default_factory=dict)  # env settings of its correction's form (with a base)

    @property
    def observations(self) -> tuple[str, ...]:
        """The local defaults, the signals, the memory, then the base rule's feature if not among them."""
        from marl_net.base_rules import check_base

        names = DEFAULT_FEATURES + self.signals + self.memory
        if self.base is not None and check_base(self.base).feature not in names:
            names += (check_base(self.base).feature,)
        return names

    @property
    def env_options(self) -> dict[str, Any]:
        """The env settings of its meta-training: :attr:`env`, and ``base_update`` and
        :attr:`correction` where it has a base (the rate comes from the base rule's tuned step size,
        ``marl_net.meta_training``)."""
        from marl_net.base_rules import check_base

        return {**self.env, **({"base_update": check_base(self.base).feature, **self.correction} if self.base else {})}

    @property
    def learned(self) -> str:
        """The learned rule's name in results: ``learned_<level>``."""
        return f"learned_{self.name}"

    @property
    def privileged(self) -> list[str]:
        """The level's features the registry marks privileged (not local)."""
        return [n for n in self.observations if is_privileged(n)]

    @property
    def compared_with(self) -> tuple[str, ...]:
        """Its own baselines, then SGD and Adam (each once)."""
        return tuple(dict.fromkeys(self.baselines + GRADIENT_METHODS))


LEVELS: dict[str, Level] = {
    "perturbation": Level("perturbation", "node perturbation's three-factor signals", NP_SIGNALS, ("np", "wp"),
                          memory=("rms0.99[np_update]",), base="np"),
    "feedback": Level("feedback", "the output units' teaching signal and the hidden units' error through fixed "
                      "random feedback weights (DFA), no weight transport", FEEDBACK_SIGNALS, ("dfa", "fa", "dfa_adam"),
                      env={"feedback": "dfa"}, memory=("ema0.9[feedback_eligibility]",), base="dfa_adam",
                      correction=relative(3.0)),
    "gradient": Level("gradient", "the backprop gradient (privileged): a learned optimizer", ("gradient",),
                      ("sgd", "adam"), memory=("ema0.9[gradient]",), base="adam", correction=relative(1.0)),
}


def parse_levels(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--levels``: comma-separated level names (``None`` or ``all``: every level), in ladder order."""
    if text is None or text == "all":
        return tuple(LEVELS)
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in LEVELS]
    if unknown or not names:
        raise ValueError(f"--levels {text!r}: choose comma-separated names from {list(LEVELS)}, e.g. "
                         "--levels perturbation,gradient")
    return tuple(n for n in LEVELS if n in names)


def unavailable_reason(level: Level) -> str | None:
    """Why ``level`` cannot run in this build (a feature or env option missing), or None. A missing
    baseline rule does not stop a level: that rule is skipped (:func:`available_rules`)."""
    from marl_net.config import EnvConfig

    missing = [n for n in level.signals if resolve_feature(n) is None]
    if missing:
        return f"observation features {missing} are not registered in this build"
    options = {f.name for f in dataclasses.fields(EnvConfig)}
    absent = [k for k in {**level.env, **level.correction} if k not in options]
    if absent:
        return f"EnvConfig has no {absent} option in this build"
    return None


def available_rules(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the names registered in ``marl_net.rules.registry``, those that are not)."""
    from marl_net.rules.registry import RULES

    return [n for n in names if n in RULES], [n for n in names if n not in RULES]


def hand_rules(levels: Sequence[str]) -> list[str]:
    """The hand rules the given levels are compared with, in ladder order, each once."""
    return list(dict.fromkeys(r for name in levels for r in LEVELS[name].compared_with))
