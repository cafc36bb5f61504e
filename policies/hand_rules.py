"""Hand-designed learning rules as policies acting inside ``network_weights_v0``.

Each policy reads only its observation features (and, for Weight Max, the env's rewards) and
returns the weight changes as actions, ``action = change / action_scale``. For the same seed it
ends with exactly the weights the standalone trainer (``marl_net.rules.trainer``) reaches: that is
the test that the environment's order of events and its features are right
(``tests/test_cai_rules.py``).

================  ==========================================  =========================  ==========
policy            observations it needs                       env settings               signal
================  ==========================================  =========================  ==========
``sgd``           ``gradient`` (privileged)                   deterministic units        -
``np``            ``np_eligibility``, ``np_error``            deterministic units        -
``wp``            ``wp_perturbation``, ``wp_error``           deterministic units        -
``weight_max``    ``bernoulli_eligibility``,                  ownership="incoming",      rewards
                  ``output_gradient``                         reward="weight_max",
                                                              hidden_activation=
                                                              "bernoulli"
``fa``            ``feedback_eligibility``                    feedback="fa",             -
                                                              differentiable units
``dfa``           ``feedback_eligibility``                    feedback="dfa",            -
                                                              differentiable units
================  ==========================================  =========================  ==========

:func:`env_kwargs` returns those settings. Actions are clipped to [-1, 1] by the env, so pick an
``action_scale`` above the largest change (a power of two keeps ``change / scale * scale`` exact);
a change that does not fit raises ValueError rather than being silently clipped.

Run one in the PettingZoo env::

    from marl_net.envs import network_weights_v0
    from marl_net.policies.hand_rules import env_kwargs, make_policy, run_episode
    kwargs = env_kwargs("np", task="teacher_student", action_scale=0.25, max_cycles=200)
    env = network_weights_v0.parallel_env(**kwargs)
    policy = make_policy("np", env.config, lr=0.03)
    losses = run_episode(env, policy, seed=0)   # the env's minibatch losses: 0.29 -> 0.04

In the batched core (E copies, as the fast path runs it): :func:`run_on_core`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from marl_net.config import EnvConfig
from marl_net.feedback_alignment import check_computable
from marl_net.ownership import Ownership
from marl_net.perturbation_features import feature_names
from marl_net.rules.common import PerCopy, check_deterministic, coefficient, perturbation_update
from marl_net.rules.node_perturbation import DEFAULT_SIGMA
from marl_net.rules.sgd import sgd_update
from marl_net.rules.weight_max_env import check_weight_max_config, hidden_delays, row_update


class HandRulePolicy:
    """Base class: finds its features in the observation, turns changes into actions."""

    name = ""
    features: tuple[str, ...] = ()

    def __init__(self, config: EnvConfig, strict: bool = True):
        missing = [f for f in self.features if f not in config.observations]
        if missing:
            raise ValueError(f"policy {self.name!r} needs observation features {missing}; build the env with "
                             f"observations={list(self.features)} (see marl_net.policies.hand_rules.env_kwargs)")
        self.config = config
        self.ownership = Ownership(config.network_spec(), config.ownership)
        self.columns = {f: config.observations.index(f) for f in self.features}
        self.num_features = len(config.observations) + 1
        self.strict = strict
        self.copies = 0

    def reset(self, copies: int = 1) -> None:
        """Start an episode in ``copies`` network copies (clears any memory)."""
        self.copies = int(copies)

    def feature(self, obs: torch.Tensor, name: str) -> torch.Tensor:
        return obs[..., self.columns[name]]

    def change(self, obs: torch.Tensor) -> torch.Tensor:
        """The weight changes ``[E, A, K]`` in agent space (subclasses)."""
        raise NotImplementedError

    def observe(self, rewards: torch.Tensor) -> None:
        """The env's rewards ``[E, A]`` for the last action (used by rules that learn from rewards)."""

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations ``[E, A, K, F + 1]`` -> actions ``[E, A, K]`` (change / action_scale)."""
        if obs.shape[-1] != self.num_features or obs.shape[-3:-1] != (self.ownership.num_agents, self.ownership.max_fan):
            raise ValueError(f"observations have shape {tuple(obs.shape)}; expected [E, {self.ownership.num_agents}, "
                             f"{self.ownership.max_fan}, {self.num_features}] for this env config")
        if self.copies != obs.shape[0]:
            self.reset(obs.shape[0])
        action = self.change(obs.to(torch.float32)) / self.config.action_scale
        if self.strict and (action.abs() > 1).any():
            need = float(action.abs().max()) * self.config.action_scale
            raise ValueError(f"policy {self.name!r} wants a weight change of {need:.3g}, beyond "
                             f"action_scale={self.config.action_scale}: raise action_scale (e.g. to "
                             f"{exact_action_scale(need)}) or lower the step size")
        return action

    # ---------------------------------------------------------------- PettingZoo dicts (E = 1)
    def act_dict(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = self.ownership.agent_ids
        stacked = np.stack([obs[a] for a in ids]).reshape(1, len(ids), self.ownership.max_fan, self.num_features)
        actions = self.act(torch.from_numpy(stacked))[0].numpy().astype(np.float32)
        return {a: actions[i] for i, a in enumerate(ids)}

    def observe_dict(self, rewards: dict[str, float]) -> None:
        self.observe(torch.tensor([[rewards[a] for a in self.ownership.agent_ids]], dtype=torch.float32))


class SGDPolicy(HandRulePolicy):
    """``change = -lr * gradient`` from the privileged ``gradient`` feature."""

    name = "sgd"
    features = ("gradient",)

    def __init__(self, config: EnvConfig, lr: float = 1.0, strict: bool = True):
        check_deterministic(config, self.name)
        super().__init__(config, strict)
        self.lr = PerCopy("lr", lr)

    def change(self, obs):
        return sgd_update(self.feature(obs, "gradient"), self.lr.tensor(obs.shape[0]).to(obs.device))


class PerturbationPolicy(HandRulePolicy):
    """NP / WP: ``change = eta/sigma * (E - E_pert) * eligibility`` from the two perturbation features."""

    rule = ""

    def __init__(self, config: EnvConfig, lr: float = 0.03, sigma: float = DEFAULT_SIGMA, strict: bool = True):
        check_deterministic(config, self.rule)
        self.features = feature_names(self.rule, sigma)
        super().__init__(config, strict)
        self.lr, self.sigma = PerCopy("lr", lr), float(sigma)

    def change(self, obs):
        eligibility, error = (self.feature(obs, f) for f in self.features)
        return perturbation_update(error, eligibility, coefficient(self.lr.tensor(obs.shape[0]), self.sigma).to(obs.device))


class NodePerturbationPolicy(PerturbationPolicy):
    name = rule = "np"


class WeightPerturbationPolicy(PerturbationPolicy):
    name = rule = "wp"


class WeightMaxPolicy(HandRulePolicy):
    """Pipelined Weight Max (``marl_net.rules.weight_max_env``): output units take the delta rule from
    ``output_gradient``; a hidden unit s layers below the output remembers its last s
    ``bernoulli_eligibility`` rows and scales the one from s steps back by the ``weight_max`` reward
    the env paid it for the last step."""

    name = "weight_max"
    features = ("bernoulli_eligibility", "output_gradient")

    def __init__(self, config: EnvConfig, lr: float = 0.5, hidden_lr: float = 1000.0, strict: bool = True):
        check_weight_max_config(config)
        if config.reward != "weight_max" or config.local_ratio is not None or getattr(config, "reward_unit", "loss") != "loss":
            raise ValueError("the weight_max policy is paid by the env's weight_max reward scheme as it is: pass "
                             "reward='weight_max', local_ratio=None and the reward in loss units")
        super().__init__(config, strict)
        self.lr, self.hidden_lr = PerCopy("lr", lr), PerCopy("hidden_lr", hidden_lr)
        self.delays = hidden_delays(self.ownership.spec.num_layers)
        self.reset(0)

    def reset(self, copies: int = 1) -> None:
        super().reset(copies)
        self.history: deque = deque(maxlen=max(self.delays))
        self.last_reward: torch.Tensor | None = None

    def observe(self, rewards: torch.Tensor) -> None:
        self.last_reward = rewards.to(torch.float32)  # the weight_max reward for the last step's change

    def change(self, obs):
        lr, hidden_lr = (p.tensor(obs.shape[0]).to(obs.device) for p in (self.lr, self.hidden_lr))
        out = obs.new_zeros(obs.shape[:-1])
        eligibility = self.feature(obs, "bernoulli_eligibility")
        for block in self.ownership.blocks:
            s, rows = self.delays[block.layer], slice(block.start, block.stop)
            if s == 0:
                out[:, rows] = sgd_update(self.feature(obs, "output_gradient")[:, rows], lr)
            elif self.last_reward is not None and len(self.history) >= s:
                out[:, rows] = row_update(self.last_reward[:, rows], self.history[-s][:, rows], hidden_lr)
        self.history.append(eligibility.clone())
        return out


class FeedbackAlignmentPolicy(HandRulePolicy):
    """FA / DFA: ``change = -lr * feedback_eligibility``, in an env whose ``feedback`` is the rule's own
    (the env draws and keeps the fixed feedback matrices; ``marl_net.feedback_alignment``)."""

    features = ("feedback_eligibility",)

    def __init__(self, config: EnvConfig, lr: float = 1.0, strict: bool = True):
        check_computable(config.network_spec(), what=f"policy {self.name!r}")
        if config.feedback != self.name:
            raise ValueError(f"policy {self.name!r} acts on the env's feedback pathway: build the env with "
                             f"feedback={self.name!r} (it has feedback={config.feedback!r})")
        super().__init__(config, strict)
        self.lr = PerCopy("lr", lr)

    def change(self, obs):
        return sgd_update(self.feature(obs, "feedback_eligibility"), self.lr.tensor(obs.shape[0]).to(obs.device))


class FeedbackAlignmentFAPolicy(FeedbackAlignmentPolicy):
    name = "fa"


class DirectFeedbackAlignmentPolicy(FeedbackAlignmentPolicy):
    name = "dfa"


POLICIES = {p.name: p for p in (SGDPolicy, NodePerturbationPolicy, WeightPerturbationPolicy, WeightMaxPolicy,
                                FeedbackAlignmentFAPolicy, DirectFeedbackAlignmentPolicy)}


def make_policy(name: str, config: EnvConfig, **hyper) -> HandRulePolicy:
    """Policy ``name`` (sgd | np | wp | weight_max | fa | dfa) for an env built with ``config``."""
    if name not in POLICIES:
        raise ValueError(f"hand-rule policy {name!r} is unknown; choose one of {sorted(POLICIES)}")
    return POLICIES[name](config, **hyper)


def env_kwargs(name: str, sigma: float = DEFAULT_SIGMA, **kwargs) -> dict:
    """``network_weights_v0`` arguments under which policy ``name`` can act (its features, and for
    Weight Max the ownership, reward scheme and Bernoulli units), plus ``kwargs``."""
    if name in ("np", "wp"):
        base = {"observations": feature_names(name, sigma)}
    elif name == "sgd":
        base = {"observations": ("gradient",)}
    elif name in ("fa", "dfa"):
        base = {"observations": FeedbackAlignmentPolicy.features, "feedback": name}
    elif name == "weight_max":
        base = {"observations": WeightMaxPolicy.features, "ownership": "incoming", "reward": "weight_max",
                "hidden_activation": "bernoulli"}
    else:
        raise ValueError(f"hand-rule policy {name!r} is unknown; choose one of {sorted(POLICIES)}")
    return {**base, **kwargs}


def exact_action_scale(largest_change: float) -> float:
    """The smallest power of two >= ``largest_change``: with it ``change / scale * scale == change``."""
    if not largest_change > 0:
        raise ValueError(f"largest_change={largest_change!r} must be positive")
    return float(2.0 ** np.ceil(np.log2(largest_change)))


def run_episode(env, policy: HandRulePolicy, seed: int, steps: int | None = None) -> list[float]:
    """Run ``policy`` in a PettingZoo ``network_weights_v0`` env for ``steps`` steps (default: the
    whole episode) from ``reset(seed=seed)``; returns the env's losses (initial loss first)."""
    obs, infos = env.reset(seed=seed)
    policy.reset(1)
    losses = [infos[env.agents[0]]["loss"]]
    steps = env.config.max_cycles if steps is None else int(steps)
    for _ in range(steps):
        if not env.agents:
            break
        obs, rewards, _, _, infos = env.step(policy.act_dict(obs))
        policy.observe_dict(rewards)
        losses.append(next(iter(infos.values()))["loss"])
    return losses


def run_on_core(core, policy: HandRulePolicy, seeds, steps: int | None = None) -> torch.Tensor:
    """Run ``policy`` in a batched ``marl_net.core.NetworkWeightsCore`` (one copy per seed, as the
    fast path does) for ``steps`` steps from a fresh seeding; returns the losses ``[E, steps + 1]``."""
    core.seed(list(seeds))
    obs = core.reset()
    policy.reset(core.copies)
    losses = [core.loss.clone()]
    for _ in range(core.config.max_cycles if steps is None else int(steps)):
        result = core.step(policy.act(obs))
        policy.observe(result.rewards)
        obs = result.obs
        losses.append(result.loss.clone())
    return torch.stack(losses, dim=1)
