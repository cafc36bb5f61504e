"""``rollout_losses`` on the block layout gives the loss curves of the padded layout."""

from __future__ import annotations

import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.evaluation import episode_seeds, rollout_losses
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy


def _padded_curve(act, config: EnvConfig, episodes: int, seed: int) -> torch.Tensor:
    """The loss curve written out on the padded layout, with rewards: the reference."""
    core = NetworkWeightsCore(config, copies=episodes)
    core.seed(episode_seeds(seed, episodes))
    obs = core.reset()
    e, a, k, f = obs.shape
    curve, done = [core.loss.clone()], torch.zeros(e, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(config.max_cycles):
            result = core.step(act(obs.reshape(e * a, k, f)).reshape(e, a, k))
            curve.append(torch.where(done, curve[-1], result.loss))
            done = done | result.terminated
            obs = result.obs
    return torch.stack(curve, dim=1)


@pytest.mark.parametrize("ownership,reward", [("outgoing", "difference"), ("incoming", "weight_max")])
def test_rollout_losses_on_blocks_equal_the_padded_layout(ownership, reward):
    config = EnvConfig(layers=(5, 9, 3), ownership=ownership, reward=reward, max_cycles=6, batch_size=8,
                       action_scale=0.3, observations=("weight", "prev_delta", "pre_activity", "rel_loss"))

    def shrink(obs):  # an elementwise rule: the same numbers whatever the layout
        return (-2.0 * obs[..., 0] + 0.5 * obs[..., 2]).clamp(-1, 1) * obs[..., -1]

    curve = rollout_losses(shrink, config, episodes=3, seed=2)
    assert curve.shape == (3, 7) and bool((curve[:, -1] != curve[:, 0]).all())
    assert torch.equal(curve, _padded_curve(shrink, config, 3, seed=2))  # bit for bit
    torch.manual_seed(0)
    policy = SynapsePolicy(PolicyConfig(num_features=5, hidden=16, depth=2, action_gain=1.0))
    torch.testing.assert_close(rollout_losses(policy, config, episodes=3, seed=2),
                               _padded_curve(lambda o: policy(o)[0], config, 3, seed=2), rtol=1e-5, atol=1e-6)


def test_a_core_without_rewards_steps_alike():
    config = EnvConfig(layers=(4, 6, 2), reward="difference", max_cycles=3)
    cores = [NetworkWeightsCore(config, copies=2, rewards=r) for r in (True, False)]
    for core in cores:
        core.seed([1, 2])
        core.reset()
    actions = torch.rand(2, cores[0].ownership.num_agents, cores[0].ownership.max_fan) - 0.5
    with_rewards, without = (core.step(actions) for core in cores)
    assert without.rewards is None and with_rewards.rewards.shape == (2, cores[0].ownership.num_agents)
    assert torch.equal(with_rewards.obs, without.obs) and torch.equal(with_rewards.loss, without.loss)
