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
==========================  ======================  ============================================

Both act on the step's own action: the observation after a step carries the eligibility of the
action just taken and its reward, and the change applies before the next action. The step size
is tuned on train tasks by :func:`tune` (every grid value and seed one copy of a batched core,
common random numbers), and :func:`evaluate` runs the tuned rule on held-out tasks::

    from marl_net.config import EnvConfig
    from marl_net.tasks.rl import preset
    from marl_net.policies.rl_hand_rules import env_kwargs, tune, evaluate
    config = EnvConfig(**env_kwargs("reinforce", **preset("bandit2")))
    best = tune("reinforce", config, grid=[0.1, 0.3, 1.0], seeds=range(4))
    evaluate("reinforce", config, lr=best.best, seeds=range(100, 104))   # {"mean_reward": ..., "regret": ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.policies.hand_rules import HandRulePolicy, SGDPolicy
from marl_net.rl_metrics import LifetimeRecorder
from marl_net.rules.common import PerCopy

# Weight changes of the RL rules reach a few units (rewards up to 10 times activities up to 1 times
# the step size): a power of two keeps change / scale * scale exact.
DEFAULT_ACTION_SCALE = 4.0


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


POLICIES = {p.name: p for p in (ReinforcePolicy, ReinforceBackpropPolicy)}


def make_policy(name: str, config: EnvConfig, **hyper) -> HandRulePolicy:
    if name not in POLICIES:
        raise ValueError(f"RL hand-rule policy {name!r} is unknown; choose one of {sorted(POLICIES)}")
    return POLICIES[name](config, **hyper)


def env_kwargs(name: str, **kwargs) -> dict:
    """``network_weights_v0`` arguments under which policy ``name`` can act, plus ``kwargs`` (an RL
    preset's, e.g. ``**preset("maze")``)."""
    if name not in POLICIES:
        raise ValueError(f"RL hand-rule policy {name!r} is unknown; choose one of {sorted(POLICIES)}")
    return {"observations": POLICIES[name].features, "action_scale": DEFAULT_ACTION_SCALE, **kwargs}


def run(name: str, config: EnvConfig, lr: float | Sequence[float], seeds: Sequence[int],
        strict: bool = True) -> LifetimeRecorder:
    """One lifetime of policy ``name`` in one batched core, one copy per seed (``lr`` one value or
    one per seed); returns the recorder with the lifetime's metrics."""
    core = NetworkWeightsCore(config, copies=len(seeds))
    policy = make_policy(name, config, lr=lr if isinstance(lr, (int, float)) else list(lr), strict=strict)
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

    @property
    def best(self) -> float:
        return self.grid[max(range(len(self.grid)), key=lambda i: self.scores[i])]

    def table(self) -> str:
        return "\n".join(["        lr  mean_reward"] + [f"{g:10.4g}  {s:11.4f}" for g, s in zip(self.grid, self.scores)])


def tune(name: str, config: EnvConfig, grid: Sequence[float], seeds: Sequence[int]) -> RLTuneResult:
    """Pick ``lr`` from ``grid`` by the mean reward over train-split lifetimes (every grid value
    sees the same seeds: tasks and initial weights). Changes beyond ``action_scale`` are clipped
    by the env during the sweep (``strict=False``), so a too-large step size scores what it
    really does."""
    grid, seeds = [float(g) for g in grid], [int(s) for s in seeds]
    if not grid or not seeds:
        raise ValueError("tune needs a non-empty grid and at least one seed")
    recorder = run(name, config.replace(split="train"), [g for g in grid for _ in seeds], seeds * len(grid),
                   strict=False)
    scores = recorder.metrics()["mean_reward"].view(len(grid), len(seeds)).mean(1)
    return RLTuneResult(name, grid, scores.tolist())


def evaluate(name: str, config: EnvConfig, lr: float, seeds: Sequence[int]) -> dict[str, float]:
    """The metrics of policy ``name`` with step size ``lr`` on held-out lifetimes (mean over seeds),
    with changes beyond ``action_scale`` clipped as during :func:`tune`, so the tuned value acts
    as it was tuned."""
    return run(name, config.replace(split="heldout"), lr, seeds, strict=False).summary()
