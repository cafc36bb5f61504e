"""The environment's configuration: one typed object, validated at construction.

Misspelled keyword arguments are caught with a suggestion (as VMAS does), and every invalid value
raises ValueError listing the valid choices. Types are checked first (``marl_net.validation``):
sizes are integers, flags booleans, scales and penalties finite numbers, never strings.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from marl_net.accumulators import signals_of
from marl_net.features import resolve_feature
from marl_net.feedback_alignment import FEEDBACK_FEATURES, check_computable, check_mode, uses_feedback
from marl_net.network import NetworkSpec
from marl_net.observations import DEFAULT_FEATURES, check_features
from marl_net.ownership import OWNERSHIPS
from marl_net.rewards import REWARD_UNITS, REWARDS, check_scheme
from marl_net.tasks import TASKS
from marl_net.tasks.base import check_split
from marl_net.validation import check_field_types
from marl_net.tasks.rl import RLTask, knows_action_values
from marl_net.rl_features import RL_FEATURES

CORRECTIONS = ("additive", "relative")  # how the agents' actions correct a base rule (EnvConfig._check_base)


@dataclass(frozen=True)
class EnvConfig:
    """Arguments of ``network_weights_v0`` (and of the batched fast-path env)."""

    task: str = "teacher_student"
    layers: tuple[int, ...] = (8, 16, 4)
    ownership: str = "outgoing"
    reward: str = "global_loss"
    local_ratio: float | None = None
    reward_unit: str = "loss"  # "loss": as the scheme pays; "percent": 100 * reward / the episode's initial loss
    max_cycles: int = 50
    batch_size: int = 32
    action_scale: float = 0.05  # a weight moves by action_scale * action per step
    # a fixed rule under the agents' actions: each step a weight also moves by base_rate times the
    # value its agent observed of the feature base_update (one of `observations`; see _check_base)
    base_update: str | None = None
    base_rate: float = 0.0
    # how actions correct the base rule: "additive" (action_scale * action + base_rate * f) or
    # "relative" (base_rate * f * exp(action_scale * action): a per-synapse step-size factor; see _check_base)
    correction: str = "additive"
    clip_actions: bool = True  # False: out-of-bound actions raise instead of being clipped
    hidden_activation: str = "tanh"
    output_activation: str = "linear"
    bias: bool = False
    init_gain: float = 1.0
    observations: tuple[str, ...] = DEFAULT_FEATURES
    feedback: str = "dfa"  # feedback features' pathway: "dfa" | "fa" (marl_net.feedback_alignment)
    split: str = "train"
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)
    divergence_threshold: float = 1.0e4  # |loss| or |w| beyond it ends the episode
    divergence_penalty: float = 10.0  # reward of every agent on the diverging step is -penalty
    crash_probability: float = 0.0  # for fault-tolerance tests: step() raises with this probability
    # RL tasks: "env" (default) or "chung": the random draws of `marl-net reproduce chung` (see _check_rl_draws)
    rl_draws: str = "env"

    def __post_init__(self):
        check_field_types(self)  # types first: no string, float or bool passes for a size or a flag
        object.__setattr__(self, "task_kwargs", dict(self.task_kwargs or {}))  # frozen dataclass
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is unknown; choose one of {sorted(TASKS)}")
        if len(self.layers) < 2 or any(n < 1 for n in self.layers):
            raise ValueError(f"layers={self.layers!r}: give at least two positive sizes, e.g. (8, 16, 4)")
        if self.ownership not in OWNERSHIPS:
            raise ValueError(f"ownership={self.ownership!r} is unknown; choose one of {sorted(OWNERSHIPS)}")
        if self.reward_unit not in REWARD_UNITS:
            raise ValueError(f"reward_unit={self.reward_unit!r} is unknown; choose one of {list(REWARD_UNITS)}")
        check_scheme(self.reward, self.ownership, (self.hidden_activation, self.output_activation), self.local_ratio)
        for name in ("max_cycles", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive integer")
        for name in ("action_scale", "divergence_threshold"):  # finite: check_field_types
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive")
        if self.divergence_penalty < 0:
            raise ValueError(f"divergence_penalty={self.divergence_penalty!r} must not be negative: diverging "
                             "would pay; use 0 for no penalty")
        if not 0.0 <= self.crash_probability <= 1.0:
            raise ValueError(f"crash_probability={self.crash_probability!r} must be in [0, 1]")
        check_features(self.observations)
        self._check_base()
        signals = signals_of(self.observations)  # an accumulator ema0.9[x] counts as its signal x
        if "gradient" in signals and "bernoulli" in (self.hidden_activation, self.output_activation):
            raise ValueError("observations include 'gradient' (or an accumulator of it), but backprop through sampled "
                             "Bernoulli units is undefined: drop it, or observe 'bernoulli_eligibility' / "
                             "'output_gradient'")
        check_split(self.split)
        self._check_rl()
        self._check_rl_draws()
        spec = self.network_spec()  # validates activations, init_gain
        check_mode(self.feedback)
        if uses_feedback(signals):
            enabled = [n for n, s in zip(self.observations, signals) if s in FEEDBACK_FEATURES]
            check_computable(spec, getattr(TASKS[self.task][0], "loss", None), what=f"observations {enabled}")

    @property
    def is_rl(self) -> bool:
        """True for an RL inner task (``marl_net.tasks.rl``): the network is a policy."""
        return issubclass(TASKS[self.task][0], RLTask)

    def _check_rl(self) -> None:
        """RL-only features need an RL task; RL tasks refuse what replays a supervised loss; a reward
        scheme that reads the actions' expected rewards needs a task that knows them."""
        rl_tasks = sorted(n for n, (cls, _) in TASKS.items() if issubclass(cls, RLTask))
        signals = dict(zip(self.observations, signals_of(self.observations)))  # accumulators: their signal
        if REWARDS[self.reward].action_values and not knows_action_values(TASKS[self.task][0]):
            knowing = sorted(n for n, (cls, _) in TASKS.items() if knows_action_values(cls))
            raise ValueError(f"reward={self.reward!r} reads each action's expected reward, which only tasks {knowing} "
                             f"know (task={self.task!r}): pick global_loss or loss_improvement")
        if not self.is_rl:
            wrong = [n for n, signal in signals.items() if signal in RL_FEATURES]
            if wrong:
                raise ValueError(f"observations {wrong} exist only for RL tasks {rl_tasks} (task={self.task!r} "
                                 "has no actions or rewards): drop them")
            return
        if REWARDS[self.reward].deterministic_units:
            raise ValueError(f"reward={self.reward!r} replays the loss on counterfactual weights, which an RL task "
                             f"cannot (its loss is the reward of actions taken): pick global_loss, loss_improvement "
                             "or weight_max")
        wrong = [n for n, signal in signals.items() if signal.startswith(("np_", "wp_"))]
        if wrong:
            raise ValueError(f"observations {wrong} compare a perturbed supervised loss with the step's loss, which "
                             f"task={self.task!r} (RL) does not have: drop them (see marl_net.rl_features)")

    def _check_base(self) -> None:
        """``base_update``: a hand rule the agents' actions correct (a residual learned rule). Each
        step every weight changes by ``action_scale * action + base_rate * f``, where ``f`` is the
        value of the per-synapse feature ``base_update`` its agent was shown in the observation the
        action answers (sanitized, as every feature). ``base_update="reinforce_update"`` with
        REINFORCE's step size puts the ``reinforce`` hand rule under the actions (zero actions are
        that rule); ``"gradient"`` with ``base_rate=-lr`` puts SGD there. The feature must be one of
        ``observations``, so the rule sees nothing it would not otherwise.

        ``correction="relative"`` makes the action a per-synapse factor of the base rule's step
        instead: ``base_rate * f * exp(action_scale * action)`` (a learned step size per synapse and
        step; zero actions are the base rule; where the base rule's change vanishes, so does the
        rule's). It needs a base rule."""
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction={self.correction!r} is unknown; choose one of {list(CORRECTIONS)}")
        if self.correction == "relative" and self.base_update is None:
            raise ValueError("correction='relative' scales a base rule's step: set base_update (e.g. "
                             "base_update='gradient', base_rate=-0.1) or use correction='additive'")
        if self.base_update is None:
            if self.base_rate != 0.0:
                raise ValueError(f"base_rate={self.base_rate!r} without base_update: name the observed feature "
                                 "it scales (e.g. base_update='reinforce_update'), or leave base_rate at 0")
            return
        if self.base_update not in self.observations:
            raise ValueError(f"base_update={self.base_update!r} is not one of observations {list(self.observations)}: "
                             "add it there (the rule sees what its base rule uses)")
        if resolve_feature(self.base_update).global_signal:
            raise ValueError(f"base_update={self.base_update!r} is a global signal, the same for every synapse: "
                             "name a per-synapse feature such as 'reinforce_update' or 'gradient'")

    def _check_rl_draws(self) -> None:
        """``rl_draws="chung"`` makes an RL lifetime draw its randomness as Chung's trainer
        (``marl_net.reproduce.control``) does for the same seed s: one generator keyed
        ``(s, STREAM_ACTOR)`` (``marl_net.reproduce.randomness``) draws the initial weights
        (Glorot-uniform, biases U(-1e-3, 1e-3): ``marl_net.rules.reinforce.init_params``) and then every
        step's hidden-unit and action uniforms, 1,024 steps at a time (``UniformStream``); CartPole's
        start states come from Gymnasium's reset stream seeded s (``CartPole.use_gym_resets``); each
        layer's pre-activation is summed by the actor's ``coagent_preact`` (bit-equal results). It
        needs task='cartpole', one inner copy (Chung: one environment per seed), biases, and logits
        out; the copies are reset together (one lifetime per seed)."""
        if self.rl_draws not in ("env", "chung"):
            raise ValueError(f"rl_draws={self.rl_draws!r} is unknown; choose 'env' or 'chung'")
        if self.rl_draws == "env":
            return
        wrong = {"task": (self.task, "cartpole"), "batch_size": (self.batch_size, 1), "bias": (self.bias, True),
                 "output_activation": (self.output_activation, "linear")}
        for name, (value, need) in wrong.items():
            if value != need:
                raise ValueError(f"rl_draws='chung' draws as Chung's CartPole trainer: pass {name}={need!r} "
                                 f"(got {value!r}), or rl_draws='env'")

    def network_spec(self) -> NetworkSpec:
        return NetworkSpec(self.layers, self.hidden_activation, self.output_activation, self.bias, self.init_gain)

    @classmethod
    def from_kwargs(cls, **kwargs) -> "EnvConfig":
        """Build from keyword arguments, refusing unknown names with the closest valid one."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid arguments: {names}"
                raise ValueError(f"unknown argument {key!r}{hint}")
        return cls(**kwargs)

    def replace(self, **changes) -> "EnvConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
