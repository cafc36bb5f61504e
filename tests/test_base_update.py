"""A hand rule under the agents' actions (``EnvConfig.base_update``, ``base_rate``): with zero actions
the env runs that hand rule, bit for bit; the PettingZoo env and both fast-path layouts agree with
it on; bad settings are refused naming the fix."""

from __future__ import annotations

import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.policies import rl_hand_rules
from marl_net.policies.hand_rules import SGDPolicy, run_on_core
from marl_net.rl_baselines import GRID
from marl_net.rl_metrics import LifetimeRecorder
from marl_net.tasks.rl import preset
from tests.test_fast_vector_env import check_vector_env_equals_pettingzoo

SEEDS = [3, 4, 5]


def _zero_action_lifetime(config: EnvConfig, seeds) -> tuple[NetworkWeightsCore, list[torch.Tensor]]:
    """A lifetime of zero actions: the core at its end and the losses of its steps."""
    core = NetworkWeightsCore(config, copies=len(seeds))
    core.seed(seeds)
    core.reset()
    zeros = torch.zeros(core.copies, core.ownership.num_agents, core.ownership.max_fan)
    losses = [core.step(zeros).loss.clone() for _ in range(config.max_cycles)]
    return core, losses


@pytest.mark.parametrize("lr", [0.25, max(GRID)])
@pytest.mark.parametrize("name", ["bandit2", "harlow"])
def test_zero_actions_over_reinforce_update_are_the_reinforce_rule(name, lr):
    """REINFORCE's hand policy (change = lr * reinforce_update, through the actions) and zero
    actions over ``base_update='reinforce_update'`` at ``base_rate=lr``: the same rewards and
    weights over a whole lifetime, bit for bit, up to the largest step size the RL tuning tries
    (the hand policy's action range holds every change, so nothing is clipped)."""
    hand = EnvConfig(**rl_hand_rules.env_kwargs("reinforce", **preset(name)))
    recorder = rl_hand_rules.run("reinforce", hand, lr=lr, seeds=SEEDS)
    based = hand.replace(base_update="reinforce_update", base_rate=lr, action_scale=0.5)
    core, losses = _zero_action_lifetime(based, SEEDS)
    assert torch.equal(torch.stack(losses), -torch.stack(recorder.curve[1:]))  # a step's loss: -mean reward
    assert all(torch.equal(p, q) for p, q in zip(core.params, recorder.core.params))
    assert any(not torch.equal(p, q) for p, q in zip(core.params, _zero_action_lifetime(
        hand, SEEDS)[0].params))  # the base rule did change the weights


def test_zero_actions_over_the_negative_gradient_are_sgd():
    """``base_update='gradient'``, ``base_rate=-lr`` under zero actions is SGD's hand policy."""
    lr = 0.1
    kwargs = dict(task="teacher_student", layers=(5, 7, 3), max_cycles=6, batch_size=8, observations=("weight", "gradient"))
    sgd_config = EnvConfig(**kwargs, action_scale=1.0)
    sgd_core = NetworkWeightsCore(sgd_config, copies=len(SEEDS))
    sgd_losses = run_on_core(sgd_core, SGDPolicy(sgd_config, lr=lr), SEEDS)
    core, losses = _zero_action_lifetime(EnvConfig(**kwargs, base_update="gradient", base_rate=-lr), SEEDS)
    assert torch.equal(torch.stack(losses, 1), sgd_losses[:, 1:])
    assert all(torch.equal(p, q) for p, q in zip(core.params, sgd_core.params))


def test_relative_correction_scales_the_base_step_per_synapse():
    """``correction='relative'``: zero actions are the base rule bit for bit (the additive
    correction's zero actions); an action ``a`` multiplies its synapse's base change by
    ``exp(action_scale * a)``, synapse by synapse, where the base change is what the agent observed."""
    kwargs = dict(task="teacher_student", layers=(5, 7, 3), max_cycles=6, batch_size=8,
                  observations=("weight", "gradient"), base_update="gradient", base_rate=-0.1, action_scale=0.7)
    additive, _ = _zero_action_lifetime(EnvConfig(**kwargs), SEEDS)
    relative, _ = _zero_action_lifetime(EnvConfig(**kwargs, correction="relative"), SEEDS)
    assert all(torch.equal(p, q) for p, q in zip(additive.params, relative.params))

    core = NetworkWeightsCore(EnvConfig(**kwargs, correction="relative"), copies=len(SEEDS))
    core.seed(SEEDS)
    core.reset()
    before = [p.clone() for p in core.params]
    gradient = [g.clone() for g in core._observed("gradient")]
    actions = torch.rand(core.copies, core.ownership.num_agents, core.ownership.max_fan,
                         generator=torch.Generator().manual_seed(1)) * 2 - 1
    core.step(actions)
    per_layer = core.ownership.from_agents(actions)
    for p, q, g, a in zip(core.params, before, gradient, per_layer):
        torch.testing.assert_close(p - q, -0.1 * g * torch.exp(0.7 * a))
    assert any(bool((a != 0).any() & (g != 0).any()) for g, a in zip(gradient, per_layer))


@pytest.mark.parametrize("ownership,base,correction", [("outgoing", "ema0.9[gradient]", "additive"),
                                                       ("incoming", "ema0.9[gradient]", "additive"),
                                                       ("outgoing", "adam[gradient]", "additive"),
                                                       ("incoming", "adam[gradient]", "relative")])
def test_vector_env_equals_pettingzoo_env_with_a_base_rule(ownership, base, correction):
    """Random actions over a momentum (or Adam) of the gradient as the base rule, three episodes
    with two autoresets: the PettingZoo env, the padded and the block layout agree (the base reads
    each view's own last observation; the accumulators restart at every autoreset)."""
    check_vector_env_equals_pettingzoo(dict(layers=(5, 7, 3), ownership=ownership, max_cycles=4, batch_size=8,
                                            observations=("weight", "gradient", base),
                                            base_update=base, base_rate=-0.05, correction=correction))


@pytest.mark.parametrize("kwargs,match", [
    (dict(base_rate=0.1), "without base_update"),
    (dict(base_update="gradient", base_rate=-0.1), "not one of observations"),
    (dict(base_update="rel_loss", base_rate=0.1, observations=("weight", "rel_loss")), "global signal"),
    (dict(base_update="gradient", base_rate=float("nan"), observations=("weight", "gradient")), "base_rate"),
    (dict(base_update=3, observations=("weight", "gradient")), "base_update"),
    (dict(correction="relative"), "set base_update"),
    (dict(correction="multiplicative", base_update="gradient", observations=("weight", "gradient")),
     "choose one of"),
])
def test_bad_base_rules_are_refused_naming_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnvConfig(**kwargs)
