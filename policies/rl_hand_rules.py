"""Hand-designed RL rules as policies acting inside ``network_weights_v0`` on RL inner tasks
(``marl_net.tasks.rl``): the baselines a learned RL rule is measured against.

==========================  ======================  ============================================
policy                      observation it needs    change
==========================  ======================  ============================================
``reinforce``               ``reinforce_update``    ``lr * 1/B sum_b (r_b - b)(onehot(a_b) - pi_b) x_b``
                                                    on the output synapses (the hidden layers keep
                                                    their random weights): REINFORCE with the
                                                    running reward baseline ``b``, a local
                                                    three-factor rule
``reinforce_backprop``      ``gradient``            ``-lr * dL/dw`` of the REINFORCE surrogate
                                                    ``L = -1/B sum_b (r_b - b) log pi(a_b | x_b)``
                                                    through every layer (privileged: backprop)
``weight_max``              ``weight``,             Chung's (2022) Weight Maximization (eq. 4,
(:class:`WeightMaxPolicy`)  ``bernoulli_            7-8) with incoming ownership: the output unit
                            eligibility``,          a REINFORCE learner on a critic's TD error,
                            ``output_eligibility``, each hidden unit one on ``v . dv`` of its
                            ``inner_reward``, the   outgoing weights; Adam; the critic
                            critic's inputs         (TD(lambda)) on the input layer's activity
==========================  ======================  ============================================

Each acts on the step's own action: the observation after a step carries the eligibility of the
action just taken and its reward, and the change applies before the next action. A step size is
tuned on train tasks by :func:`tune` (every grid value and seed one copy of a batched core,
common random numbers); :func:`tune_step_sizes` tunes each of a rule's step sizes
(:data:`STEP_SIZES`: Weight Max has the output layer's ``lr``, the hidden layers' ``hidden_lr`` and
its critic's ``critic_lr``) one after the other, and :func:`evaluate` runs the tuned rule on held-out tasks::

    from marl_net.config import EnvConfig
    from marl_net.tasks.rl import preset
    from marl_net.policies.rl_hand_rules import env_kwargs, tune, evaluate
    config = EnvConfig(**env_kwargs("reinforce", **preset("bandit2")))
    best = tune("reinforce", config, grid=[0.1, 0.3, 1.0], seeds=range(4))
    evaluate("reinforce", config, lr=best.best, seeds=range(100, 104))   # {"mean_reward": ..., "regret": ...}
    wm = EnvConfig(**env_kwargs("weight_max", **preset("bandit2")))   # Bernoulli hidden, incoming, biases
    steps, sweeps = tune_step_sizes("weight_max", wm, grid=[0.03, 0.1, 0.3], seeds=range(4))
    evaluate("weight_max", wm, seeds=range(100, 104), **steps)   # {"lr", "hidden_lr", "critic_lr"}

On the RL presets Weight Max runs on the same tasks, layers, lifetimes and seeds as the other
rules, with the network it requires (:data:`WEIGHT_MAX_NETWORK`, as in Chung's paper):
Bernoulli-logistic hidden units, incoming ownership and biases, so its initial weights are not the
other rules'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.reproduce.agent import Critic, per_tensor
from marl_net.reproduce.optim import Adam
from marl_net.reproduce.randomness import STREAM_CRITIC, copy_generators
from marl_net.policies.hand_rules import HandRulePolicy, SGDPolicy
from marl_net.rl_metrics import LifetimeRecorder
from marl_net.rules.common import PerCopy
from marl_net.rules.reinforce import split
from marl_net.rules.weight_max import WeightMax

# A hand RL rule acts by its change over ``action_scale``, and the env clips actions to [-1, 1]. The
# scale is far above REINFORCE's changes at any step size of ``rl_baselines.GRID`` (at most 100
# times a reward difference of a few units times a hidden activity below 1) and Weight Max's (Adam
# moves a weight by about its step size), so those run unclipped, as the learned rule's base rule
# does (``EnvConfig.base_update``); REINFORCE-with-backprop's changes reach the input synapses
# times raw inputs and can pass it (on CartPole at step size 100), where tuning clips them (:func:`tune`).
# A power of two keeps change / scale * scale exact.
DEFAULT_ACTION_SCALE = 4096.0


def _check_rl(config: EnvConfig, name: str) -> None:
    if not config.is_rl:
        raise ValueError(f"policy {name!r} is an RL rule: build the env with an RL task (bandit, harlow, maze), "
                         f"not task={config.task!r}")


class ReinforcePolicy(HandRulePolicy):
    """REINFORCE with the running reward baseline on the output synapses (``reinforce_update``)."""

    name = "reinforce"
    features = ("reinforce_update",)

    def __init__(self, config: EnvConfig, lr: float | Sequence[float] = 0.5, strict: bool = True):
        _check_rl(config, self.name)
        super().__init__(config, strict)
        self.lr = PerCopy("lr", lr)

    def change(self, obs):
        lr = self.lr.tensor(obs.shape[0]).to(obs.device).view(-1, 1, 1)
        return lr * self.feature(obs, "reinforce_update")


class ReinforceBackpropPolicy(SGDPolicy):
    """Gradient descent on the REINFORCE surrogate (the ``gradient`` feature of an RL task)."""

    name = "reinforce_backprop"

    def __init__(self, config: EnvConfig, lr: float | Sequence[float] = 0.5, strict: bool = True):
        _check_rl(config, self.name)
        super().__init__(config, lr=lr, strict=strict)


class WeightMaxPolicy(HandRulePolicy):
    """Chung's (2022) Weight Max actor-critic as a policy in the env, computed by the code of
    ``marl-net reproduce chung`` (one implementation): the rule's maths are
    :meth:`marl_net.rules.weight_max.WeightMax.update_from_grads`, the optimizer
    :class:`marl_net.reproduce.optim.Adam` (per-layer step sizes, linear decay), the critic
    :class:`marl_net.reproduce.agent.Critic` (TD(lambda), accumulating traces). What the policy
    reads is local or global: each synapse's ``weight`` and eligibility (``bernoulli_eligibility``
    for hidden units, ``output_eligibility`` for the output's; with one inner copy exactly Chung's
    ``(h - mean) x``), the ``inner_reward``, and, for the critic, the input layer's activity now
    (``pre_activity``), next (``next_input``) and where the transition ended (``final_input``), and
    whether the inner episode ended (``inner_terminated``, ``inner_episode_end``).

    Its signal is the critic's TD error, step for step as ``marl_net.reproduce.control`` computes it:
    ``delta_t = r_t + gamma (1 - terminated) V(final state) - V(s_t)``, with ``V(s_t)`` evaluated when
    ``s_t`` was the next state (under the critic's weights of that step) and the critic's and rule's
    traces cleared where an episode starts. The critic's initial weights come from each copy seed's
    critic stream (``STREAM_CRITIC``), as in the trainer: pass the core's ``seeds``.

    An actor or critic step size is one number per layer, or one list of a number per copy (a grid
    of step sizes tuned as one batch, :func:`tune`); :func:`weight_max_policy` builds the policy
    with the RL job's settings for the RL presets.

    Under :meth:`env_kwargs` (Chung's network interface and ``rl_draws="chung"``) a lifetime equals
    ``marl-net reproduce chung --task cartpole --methods weight_max`` episode for episode
    (``tests/test_rl_cartpole_equivalence.py``). Keep ``action_scale`` a power of two above the
    largest Adam step (Adam moves a weight by about its step size), so ``change / scale * scale`` is
    the trainer's change exactly."""

    name = "weight_max"
    features = ("weight", "bernoulli_eligibility", "output_eligibility", "pre_activity", "inner_reward", "next_input",
                "final_input", "inner_terminated", "inner_episode_end")

    def __init__(self, config: EnvConfig, seeds: Sequence[int], lr: Sequence[float],
                 lr_end: Sequence[float] | None = None, decay_steps: int = 1, critic_lr: Sequence[float] = (0.0,) * 3,
                 critic_lr_end: Sequence[float] | None = None, gamma: float = 0.98, lam: float = 0.8,
                 critic_hidden: Sequence[int] = (64, 32), p: float = 2.0, weight_decay: float = 0.0,
                 strict: bool = True):
        _check_rl(config, self.name)
        if config.ownership != "incoming" or not config.bias or config.hidden_activation != "bernoulli":
            raise ValueError("policy 'weight_max' needs Chung's network: pass ownership='incoming', bias=True and "
                             "hidden_activation='bernoulli'")
        if not (0 <= gamma <= 1 and 0 <= lam <= 1):
            raise ValueError(f"gamma={gamma!r} and lam={lam!r} must be in [0, 1]")
        if len(config.layers) < 3:
            raise ValueError(f"layers={config.layers!r}: policy 'weight_max' needs at least one hidden layer (its "
                             "hidden units are the agents Weight Max pays), e.g. layers=(4, 16, 2)")
        super().__init__(config, strict)
        n_layers = self.ownership.spec.num_layers
        if len(lr) != n_layers or (lr_end is not None and len(lr_end) != n_layers):
            raise ValueError(f"give one actor step size per weight layer ({n_layers}): lr={list(lr)!r}, "
                             f"lr_end={lr_end!r}")
        self.seeds = [int(s) for s in seeds]
        for rate in (*lr, *(lr_end or ()), *critic_lr, *(critic_lr_end or ())):
            if not isinstance(rate, (int, float)) and len(rate) != len(self.seeds):
                raise ValueError(f"a per-copy step size needs one value per seed ({len(self.seeds)}), got "
                                 f"{len(rate)}: pass a number or a list as long as seeds")
        self.lr, self.lr_end, self.decay_steps = list(lr), lr_end, int(decay_steps)
        self.critic_lr, self.critic_lr_end, self.critic_hidden = list(critic_lr), critic_lr_end, tuple(critic_hidden)
        self.gamma, self.lam = float(gamma), float(lam)
        self.make_rule = lambda: WeightMax(p=p, weight_decay=weight_decay)
        self.reset(len(self.seeds))

    @staticmethod
    def env_kwargs(**kwargs) -> dict:
        """``network_weights_v0`` arguments for this policy with Chung's CartPole interface
        (64-32 Bernoulli hidden units, one logistic output, CartPole-v1's reward of 1 per step,
        Chung's random draws), updated with ``kwargs``."""
        task_kwargs = {"sutton_barto_reward": False, "previous_action_reward": False, "reference_logit": True,
                       **kwargs.pop("task_kwargs", {})}
        return {"task": "cartpole", "layers": (4, 64, 32, 1), "hidden_activation": "bernoulli", "bias": True,
                "ownership": "incoming", "batch_size": 1, "rl_draws": "chung", "action_scale": 4.0,
                "observations": WeightMaxPolicy.features, "task_kwargs": task_kwargs, **kwargs}

    def reset(self, copies: int = 1) -> None:
        if copies != len(self.seeds):
            raise ValueError(f"policy 'weight_max' was built for {len(self.seeds)} seeds but the env has {copies} "
                             "copies: pass the core's seeds")
        super().reset(copies)
        spec = self.ownership.spec
        sizes = [n for rows, cols in zip(spec.layers[1:], spec.layers[:-1]) for n in (rows * cols, rows)]
        self.rule = self.make_rule()
        self.adam = Adam(torch.zeros(copies, sum(sizes)), sizes, per_tensor(self.lr),
                         per_tensor(self.lr_end) if self.lr_end is not None else None, self.decay_steps)
        self.critic = Critic(copy_generators(self.seeds, STREAM_CRITIC), spec.layers[0], self.critic_lr,
                             self.critic_lr_end, self.decay_steps, trace_decay=self.gamma * self.lam,
                             hidden=self.critic_hidden)
        self.value = None  # (values, inputs, pre-activations, row) of V(s_t), computed when s_t was next
        self.start = torch.ones(copies, dtype=torch.bool)  # an episode starts at this step

    def per_layer(self, obs: torch.Tensor, name: str) -> list[torch.Tensor]:
        """Feature ``name`` as Chung's parameter list ``[W_0, b_0, W_1, ...]`` (bias column split off)."""
        out = []
        for x in self.ownership.from_agents(self.feature(obs, name)):
            out += [x[..., :-1], x[..., -1]]
        return out

    def state(self, obs: torch.Tensor, name: str) -> torch.Tensor:
        """``[E, n_in]``: the network input a first-layer feature holds (``pre_activity``, ``next_input``...)."""
        return self.per_layer(obs, name)[0][:, 0, :]

    def change(self, obs):
        if self.value is None:  # the lifetime's first state, valued as the trainer values it
            self.value = (*self.critic.value(self.state(obs, "pre_activity").unsqueeze(1)), 0)
        v, inputs, preacts, row = self.value
        # row 0: the state the transition ended in; row 1: where the next step starts
        pair = torch.stack([self.state(obs, "final_input"), self.state(obs, "next_input")], 1)
        v_pair, pair_inputs, pair_preacts = self.critic.value(pair)
        reward = self.feature(obs, "inner_reward")[:, 0, 0]
        alive = 1.0 - self.feature(obs, "inner_terminated")[:, 0, 0]
        td = reward + self.gamma * alive * v_pair[:, 0] - v[:, row]
        self.critic.learn(inputs, preacts, row, td, self.start)
        params = self.per_layer(obs, "weight")
        hidden, output = self.per_layer(obs, "bernoulli_eligibility"), self.per_layer(obs, "output_eligibility")
        grads = [h + o for h, o in zip(hidden, output)]  # each is zero where the other is not
        delta = self.adam.step(self.rule.update_from_grads(grads, params, td, self.start))
        self.start = self.feature(obs, "inner_episode_end")[:, 0, 0] > 0
        self.value = (v_pair, pair_inputs, pair_preacts, 1)
        parts = split(delta, params)
        return self.ownership.to_agents([torch.cat([w, b.unsqueeze(-1)], dim=-1) for w, b in zip(parts[0::2], parts[1::2])])


POLICIES = {p.name: p for p in (ReinforcePolicy, ReinforceBackpropPolicy, WeightMaxPolicy)}
# The step sizes each rule is tuned over, in the order the tuner picks them (:func:`tune_step_sizes`).
STEP_SIZES: dict[str, tuple[str, ...]] = {"reinforce": ("lr",), "reinforce_backprop": ("lr",),
                                          "weight_max": ("lr", "hidden_lr", "critic_lr")}

# Weight Max on the RL presets (:func:`weight_max_policy`). The network it needs, as in Chung's
# paper: Bernoulli-logistic hidden units (the agents it pays), incoming ownership (a unit owns its
# incoming weights and is paid for its outgoing ones), biases. Its critic (Chung's 64-32 TD(lambda)
# network on the input layer) learns with one Adam step size in every layer. On the bandits every
# pull is its own one-step episode (Chung's multiplexer setting): gamma = lambda = 0, the signal
# r - V(s); elsewhere Chung's gamma 0.98 and lambda 0.8. The defaults below hold a step size until
# the tuner reaches it (the output layer's ``lr`` is tuned first, with these two).
WEIGHT_MAX_NETWORK = {"ownership": "incoming", "bias": True, "hidden_activation": "bernoulli"}
WEIGHT_MAX_HIDDEN_LR = 0.1
WEIGHT_MAX_CRITIC_LR = 0.1
ONE_STEP_TASKS = ("bandit",)
CHUNG_GAMMA, CHUNG_LAMBDA = 0.98, 0.8


def _check_name(name: str) -> None:
    if name not in POLICIES:
        raise ValueError(f"RL hand-rule policy {name!r} is unknown; choose one of {sorted(POLICIES)}")


def weight_max_policy(config: EnvConfig, seeds: Sequence[int], lr: float | Sequence[float],
                      hidden_lr: float | Sequence[float] = WEIGHT_MAX_HIDDEN_LR,
                      critic_lr: float | Sequence[float] = WEIGHT_MAX_CRITIC_LR,
                      strict: bool = True) -> WeightMaxPolicy:
    """Weight Max with the RL job's settings (:data:`ONE_STEP_TASKS`): the Adam step sizes of the
    output layer ``lr``, of every hidden layer ``hidden_lr`` and of every critic layer ``critic_lr``
    (each a number or one per seed)."""
    one_step = config.task in ONE_STEP_TASKS
    hidden = [hidden_lr] * max(0, len(config.layers) - 2)
    return WeightMaxPolicy(config, seeds, lr=[*hidden, lr], critic_lr=[critic_lr] * 3,
                           gamma=0.0 if one_step else CHUNG_GAMMA, lam=0.0 if one_step else CHUNG_LAMBDA,
                           strict=strict)


def make_policy(name: str, config: EnvConfig, seeds: Sequence[int] | None = None, **hyper) -> HandRulePolicy:
    """Policy ``name`` with its step sizes (:data:`STEP_SIZES`; ``strict`` too); ``weight_max`` also
    needs the core's ``seeds`` (its critic's initial weights) and is built by :func:`weight_max_policy`."""
    _check_name(name)
    unknown = [k for k in hyper if k not in (*STEP_SIZES[name], "strict")]
    if unknown:
        raise ValueError(f"policy {name!r} takes the step sizes {list(STEP_SIZES[name])}, not {unknown}")
    if name != "weight_max":
        return POLICIES[name](config, **hyper)
    if seeds is None:
        raise ValueError("policy 'weight_max' needs the core's seeds (its critic's initial weights): pass seeds=...")
    return weight_max_policy(config, seeds, **hyper)


def env_kwargs(name: str, **kwargs) -> dict:
    """``network_weights_v0`` arguments under which policy ``name`` can act, plus ``kwargs`` (an RL
    preset's, e.g. ``**preset("maze")``); for ``weight_max`` the network of :data:`WEIGHT_MAX_NETWORK`."""
    _check_name(name)
    network = WEIGHT_MAX_NETWORK if name == "weight_max" else {}
    return {"observations": POLICIES[name].features, "action_scale": DEFAULT_ACTION_SCALE, **network, **kwargs}


def refusal(name: str, config: EnvConfig) -> str | None:
    """Why policy ``name`` cannot act in ``config``'s env (the policy's own ValueError), or None."""
    try:
        make_policy(name, config, seeds=[0], **{k: 1.0 for k in STEP_SIZES[name]})
    except ValueError as exc:
        return str(exc)
    return None


def _rate(value: float | Sequence[float]) -> float | list[float]:
    return float(value) if isinstance(value, (int, float)) else [float(v) for v in value]


def run(name: str, config: EnvConfig, lr: float | Sequence[float], seeds: Sequence[int],
        strict: bool = True, **steps) -> LifetimeRecorder:
    """One lifetime of policy ``name`` in one batched core, one copy per seed (``lr`` and the
    rule's other step sizes ``steps``, e.g. Weight Max's ``hidden_lr``, one value or one per seed);
    returns the recorder with the lifetime's metrics."""
    core = NetworkWeightsCore(config, copies=len(seeds))
    rates = {k: _rate(v) for k, v in {"lr": lr, **steps}.items()}
    policy = make_policy(name, config, seeds=[int(s) for s in seeds], strict=strict, **rates)
    core.seed([int(s) for s in seeds])
    obs = core.reset()
    policy.reset(core.copies)
    recorder = LifetimeRecorder(core)
    recorder.record()
    for _ in range(config.max_cycles):
        result = core.step(policy.act(obs))
        policy.observe(result.rewards)
        obs = result.obs
        recorder.record()
    return recorder


@dataclass
class RLTuneResult:
    rule: str
    grid: list[float]
    scores: list[float]  # mean reward per inner step, mean over seeds (higher is better)
    param: str = "lr"

    @property
    def best(self) -> float:
        return self.grid[max(range(len(self.grid)), key=lambda i: self.scores[i])]

    def table(self) -> str:
        return "\n".join([f"{self.param:>10}  mean_reward"] +
                         [f"{g:10.4g}  {s:11.4f}" for g, s in zip(self.grid, self.scores)])


def tune(name: str, config: EnvConfig, grid: Sequence[float], seeds: Sequence[int], param: str = "lr",
         **fixed) -> RLTuneResult:
    """Pick step size ``param`` of rule ``name`` (``lr``, or Weight Max's ``hidden_lr``, ``critic_lr``) from ``grid``
    by the mean reward over train-split lifetimes (every grid value sees the same seeds: tasks and
    initial weights), the rule's other step sizes ``fixed``. Changes beyond ``action_scale`` are
    clipped by the env during the sweep (``strict=False``), so a too-large step size scores what it
    really does."""
    _check_name(name)
    grid, seeds = [float(g) for g in grid], [int(s) for s in seeds]
    if not grid or not seeds:
        raise ValueError("tune needs a non-empty grid and at least one seed")
    if param not in STEP_SIZES[name] or param in fixed:
        raise ValueError(f"rule {name!r} is tuned over {list(STEP_SIZES[name])}: pick param from them and fix only "
                         f"the others (param={param!r}, fixed={sorted(fixed)})")
    if param != "lr" and "lr" not in fixed:
        raise ValueError(f"tuning {param} of rule {name!r} needs the output step size fixed: pass lr=... "
                         "(tune_step_sizes picks lr first)")
    steps = {**fixed, param: [g for g in grid for _ in seeds]}
    recorder = run(name, config.replace(split="train"), seeds=seeds * len(grid), strict=False, **steps)
    scores = recorder.metrics()["mean_reward"].view(len(grid), len(seeds)).mean(1)
    return RLTuneResult(name, grid, scores.tolist(), param)


def tune_step_sizes(name: str, config: EnvConfig, grid: Sequence[float], seeds: Sequence[int]
                    ) -> tuple[dict[str, float], list[RLTuneResult]]:
    """Every step size of rule ``name`` (:data:`STEP_SIZES`) tuned by :func:`tune` over ``grid``, one
    after the other as ``marl-net compare --tune`` tunes the supervised Weight Max: ``lr`` with the
    others at their defaults, then each next one with those already picked. Returns the step sizes
    and the sweeps."""
    _check_name(name)
    chosen: dict[str, float] = {}
    sweeps = []
    for param in STEP_SIZES[name]:
        sweeps.append(tune(name, config, grid, seeds, param=param, **chosen))
        chosen[param] = sweeps[-1].best
    return chosen, sweeps


def evaluate(name: str, config: EnvConfig, lr: float, seeds: Sequence[int], **steps) -> dict[str, float]:
    """The metrics of policy ``name`` with step size ``lr`` (and ``steps``) on held-out lifetimes
    (mean over seeds), with changes beyond ``action_scale`` clipped as during :func:`tune`, so the
    tuned value acts as it was tuned."""
    return run(name, config.replace(split="heldout"), lr, seeds, strict=False, **steps).summary()
