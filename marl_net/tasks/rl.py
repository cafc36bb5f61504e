"""Reinforcement-learning inner tasks: the controlled network is itself an RL agent.

An RL task is a family of environments (a bandit's arm probabilities, a maze's walls, a Harlow
episode's two objects), one per task id; train and held-out ids are disjoint as for every task
(``marl_net.tasks.base``). Network copy e plays ``batch_size`` parallel copies ("inner copies") of
its own instance, all tensors ``[E, B, ...]``: nothing loops over inner copies.

The network is a policy. Its input follows the RL² convention (Duan et al. 2016; Wang et al.
2016): the task's observation, then the previous action one-hot (zeros before the first action)
and the previous reward, so ``input_dim = obs_dim + num_actions + 1``; its ``num_actions`` outputs
are logits of a softmax policy. One env step of ``network_weights_v0`` is one inner time step of
every inner copy, and the weights change while the agent acts (as in MetODS, Chalvidal et al.
2022): the core applies the neurons' weight changes, runs the forward pass on the current input,
samples an action per inner copy from the softmax (uniforms from the copy's noise generator), and
the task answers with rewards and next observations (its own randomness from the copy's data
generator: ``uniforms_per_step`` uniforms per inner copy and step, drawn whether used or not).

The reset acts too, as the supervised reset evaluates the fresh network's loss: an episode of
``max_cycles`` steps is a lifetime of ``max_cycles + 1`` inner steps (a 100-pull bandit is
``max_cycles=99``; :data:`PRESETS` sets it).

The inner *loss* of a step is the negative mean reward over the inner copies,
``E_t = -1/B sum_b r_b``, so every reward scheme built on the loss applies (``global_loss`` pays
the mean reward). The loss at reset used to normalize (``rel_loss``, ``reward_unit="percent"``) is
the task's ``reward_scale`` (its largest reward), not the first step's loss, which may be zero.
For the gradient features the loss function on the step's inputs is the REINFORCE surrogate
``-1/B sum_b (r_b - baseline) log pi(a_b | x_b)`` (``marl_net.losses``), whose backprop gradient
is the policy-gradient estimate with the running reward baseline; schemes and features that
compare a replayed loss with ``E_t`` (``difference``, NP/WP) are refused for RL tasks.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch

from marl_net import seeding
from marl_net.tasks.base import Task, TaskData

State = dict  # name -> tensor with a leading copy dimension [E, ...]


@dataclass
class RLStep:
    """What one inner step did, for observation features (``marl_net.rl_features``)."""

    actions: torch.Tensor  # [E, B] int64, the sampled actions
    probs: torch.Tensor  # [E, B, num_actions], the policy's probabilities
    rewards: torch.Tensor  # [E, B]
    baseline: torch.Tensor  # [E], the running reward baseline before this step
    rpe: torch.Tensor  # [E], mean reward minus that baseline (reward-prediction error)
    task: "RLTask | None" = None  # the task and its state after the step, for the episode-boundary
    next_state: "State | None" = None  # features (next_input, final_input, inner_terminated, ...)
    action_values: "torch.Tensor | None" = None  # [E, B, num_actions]: each action's expected reward in
    # the state the step acted in, for tasks that know it (knows_action_values; the expected_regret scheme)


class RLTask(Task):
    """A family of RL environments for a softmax-policy network (see the module docstring).

    Subclasses set ``obs_dim``, ``num_actions``, ``reward_scale`` and implement :meth:`start`,
    :meth:`observe` and :meth:`transition`. ``baseline_rate`` is the step size of the running
    reward baseline ``b <- b + baseline_rate * (mean reward - b)`` (reset to 0 with the network).

    Two options, off by default, give the network Chung's (2022) interface, as ``marl-net
    reproduce chung`` trains it (``tests/test_rl_cartpole_equivalence.py``):
    ``previous_action_reward=False`` feeds the observation alone (no RL² memory: ``input_dim =
    obs_dim``), and ``reference_logit=True`` gives the network ``num_actions - 1`` outputs, the free
    logits of a softmax whose last logit is fixed at 0 (for two actions, one logistic output unit).
    The ``gradient`` feature is refused with a reference logit (the REINFORCE surrogate takes every
    logit from the network)."""

    loss = "reinforce"
    obs_dim: int
    num_actions: int
    reward_scale: float
    num_samples = 0  # no data set
    uniforms_per_step = 1  # data-generator uniforms per inner copy and step (1: shape [E, B], else [E, B, k])

    def __init__(self, input_dim: int | None, output_dim: int | None, baseline_rate: float = 0.1,
                 previous_action_reward: bool = True, reference_logit: bool = False):
        if not 0.0 < float(baseline_rate) <= 1.0:
            raise ValueError(f"baseline_rate={baseline_rate!r} must be in (0, 1]")
        for name, flag in (("previous_action_reward", previous_action_reward), ("reference_logit", reference_logit)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name}={flag!r} must be True or False")
        self.baseline_rate = float(baseline_rate)
        self.previous_action_reward = previous_action_reward
        self.reference_logit = reference_logit
        self.input_dim = self.obs_dim + (self.num_actions + 1 if previous_action_reward else 0)
        self.output_dim = self.num_actions - int(reference_logit)
        self.check_network(int(input_dim or self.input_dim), int(output_dim or self.output_dim))

    def instance(self, task_id: int) -> TaskData:
        raise ValueError(f"task {self.name!r} is an RL task with no data set: step it through network_weights_v0")

    def instances(self, task_ids: Sequence[int]):
        self.instance(task_ids[0] if task_ids else 0)

    # ---------------------------------------------------------------- the task's part
    @abstractmethod
    def start(self, task_ids: Sequence[int], uniforms: torch.Tensor) -> State:
        """Instances ``task_ids`` (one per network copy) and their inner copies' first states.
        ``uniforms [E, B]`` come from the copies' data generators (e.g. start positions)."""

    @abstractmethod
    def observe(self, state: State) -> torch.Tensor:
        """The inner copies' observations ``[E, B, obs_dim]``."""

    @abstractmethod
    def transition(self, state: State, actions: torch.Tensor, uniforms: torch.Tensor) -> tuple[State, torch.Tensor]:
        """Apply ``actions [E, B]``; returns the next state and the rewards ``[E, B]``.
        ``uniforms [E, B]`` are this step's draws of the copies' data generators."""

    def action_values(self, state: State) -> torch.Tensor | None:
        """``[E, B, num_actions]``: the expected reward of each action in ``state``, for tasks that
        know it and override this method (:func:`knows_action_values`; the meta-training's
        ``expected_regret`` reward scheme reads it, never an observation); None elsewhere."""
        return None

    def final_observe(self, state: State) -> torch.Tensor:
        """The observations ``[E, B, obs_dim]`` the last transition ended in: :meth:`observe`'s,
        except where an episodic task restarted an inner episode (CartPole overrides it)."""
        return self.observe(state)

    def episode_flags(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """``(terminated, truncated)`` ``[E, B]`` bool: which inner episodes the last transition
        ended (continuing tasks: none; CartPole overrides it)."""
        none = torch.zeros_like(state["prev_action"], dtype=torch.bool)
        return none, none

    # ---------------------------------------------------------------- shared by every RL task
    def initial_state(self, task_ids: Sequence[int], data_gens: Sequence[torch.Generator], inner: int,
                      device: torch.device) -> State:
        """:meth:`start` plus the RL² memory (no previous action, zero reward), on ``device``."""
        state = self.start(task_ids, seeding.rand(data_gens, self._uniform_shape(inner)))
        state = {k: v.to(device) for k, v in state.items()}
        e = len(task_ids)
        state["prev_action"] = torch.full((e, inner), -1, dtype=torch.long, device=device)
        state["prev_reward"] = torch.zeros(e, inner, device=device)
        return state

    def _uniform_shape(self, inner: int) -> tuple[int, ...]:
        return (inner,) if self.uniforms_per_step == 1 else (inner, self.uniforms_per_step)

    def network_input(self, state: State, final: bool = False) -> torch.Tensor:
        """``[E, B, input_dim]``: observation, previous action one-hot, previous reward (RL²; the
        observation alone with ``previous_action_reward=False``). ``final=True``: with the
        observation the transition ended in (:meth:`final_observe`)."""
        obs = self.final_observe(state) if final else self.observe(state)
        if not self.previous_action_reward:
            return obs
        prev = state["prev_action"]
        onehot = torch.nn.functional.one_hot(prev.clamp(min=0), self.num_actions).to(obs.dtype)
        onehot = onehot * (prev >= 0).unsqueeze(-1).to(obs.dtype)
        return torch.cat([obs, onehot, state["prev_reward"].unsqueeze(-1).to(obs.dtype)], dim=-1)

    def act(self, state: State, logits: torch.Tensor, baseline: torch.Tensor,
            noise_gens: Sequence[torch.Generator], data_gens: Sequence[torch.Generator],
            action_uniforms: torch.Tensor | None = None) -> tuple[State, RLStep]:
        """Sample actions from ``softmax(logits [E, B, output_dim])`` (with ``reference_logit`` a 0
        logit appended; one uniform per inner copy from ``noise_gens``, or ``action_uniforms [E, B]``
        when given, inverse CDF), step the task (one uniform per inner copy from ``data_gens``) and
        update the RL² memory. Returns the next state and the step's record."""
        if self.reference_logit:
            logits = torch.cat([logits, torch.zeros_like(logits[..., :1])], dim=-1)
        probs = torch.softmax(logits, dim=-1)
        e, b = probs.shape[:2]
        u = action_uniforms if action_uniforms is not None else seeding.rand(
            noise_gens, (b,), device=probs.device, dtype=probs.dtype)
        actions = sample_categorical(probs, u)
        values = self.action_values(state)
        state, rewards = self.transition(state, actions, seeding.rand(data_gens, self._uniform_shape(b),
                                                                      device=probs.device))
        rewards = rewards.to(probs.dtype)
        state = {**state, "prev_action": actions, "prev_reward": rewards}
        rpe = rewards.mean(1) - baseline
        return state, RLStep(actions=actions, probs=probs, rewards=rewards, baseline=baseline, rpe=rpe, task=self,
                             next_state=state, action_values=values)


def knows_action_values(task_cls: type) -> bool:
    """Whether task class ``task_cls`` is an RL task that gives each action's expected reward (it
    overrides :meth:`RLTask.action_values`: the bandit)."""
    return issubclass(task_cls, RLTask) and task_cls.action_values is not RLTask.action_values


def sample_categorical(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: the first action whose cumulative probability exceeds the uniform
    (``probs [..., n]``, ``uniforms [...]`` in [0, 1)); rounding never yields an index past n - 1."""
    below = (probs.cumsum(-1) <= uniforms.unsqueeze(-1)).sum(-1)
    return below.clamp(max=probs.shape[-1] - 1)


def uniform_choice(allowed: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """For each row of ``allowed [..., n]`` (bool, at least one True) the index of the
    ``floor(u * count)``-th True entry: a uniform choice among the allowed indices."""
    counts = allowed.sum(-1)
    rank = (uniforms * counts).long().clamp(max=counts - 1)
    cum = allowed.long().cumsum(-1)
    return (cum <= rank.unsqueeze(-1)).sum(-1)


def index_state(state: State, sel: torch.Tensor) -> State:
    """The copies ``sel`` of a state."""
    return {k: v[sel] for k, v in state.items()}


def assign_state(state: State, sel: torch.Tensor, new: State) -> None:
    """Write ``new`` (the copies ``sel``) into ``state`` in place."""
    for k, v in new.items():
        state[k][sel] = v


# Ready-made settings (network_weights_v0 keyword arguments) for each RL task: layer sizes that fit
# the task's input and output, the lifetime, the task's own arguments, and one inner copy (one
# agent's lifetime, as in the papers; batch_size=B makes B agents that share one set of weights
# and learn from their pooled experience).
PRESETS: dict[str, dict] = {
    "bandit2": dict(task="bandit", task_kwargs={"arms": 2}, layers=(4, 16, 2), max_cycles=99, batch_size=1),
    "bandit10": dict(task="bandit", task_kwargs={"arms": 10}, layers=(12, 20, 10), max_cycles=99, batch_size=1),
    "harlow": dict(task="harlow", layers=(17, 20, 3), max_cycles=9, batch_size=1),  # 5 presentations (MetODS)
    # the same with one object code for both sides (code left - code right; docs/rl_tasks.md)
    "harlow_difference": dict(task="harlow", task_kwargs={"encoding": "difference"}, layers=(9, 20, 3), max_cycles=9,
                              batch_size=1),
    "maze": dict(task="maze", task_kwargs={"size": 7}, layers=(14, 32, 4), max_cycles=99, batch_size=1),
    "maze_large": dict(task="maze", task_kwargs={"size": 11}, layers=(14, 32, 4), max_cycles=99, batch_size=1),
    "cartpole": dict(task="cartpole", layers=(7, 32, 2), max_cycles=999, batch_size=1),
}


def preset(name: str, **overrides) -> dict:
    """``network_weights_v0`` arguments of RL preset ``name`` (see :data:`PRESETS`), updated with
    ``overrides`` (``task_kwargs`` are merged)."""
    if name not in PRESETS:
        raise ValueError(f"RL preset {name!r} is unknown; choose one of {sorted(PRESETS)}")
    kwargs = dict(PRESETS[name])
    task_kwargs = {**kwargs.get("task_kwargs", {}), **overrides.pop("task_kwargs", {})}
    kwargs.update(overrides)
    if task_kwargs:
        kwargs["task_kwargs"] = task_kwargs
    return kwargs
