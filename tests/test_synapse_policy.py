"""The shared policy's fused forward and backward equal the textbook per-synapse network."""

import pytest
import torch

from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy, _Readout


def _reference(policy: SynapsePolicy, obs: torch.Tensor):
    """The policy written out plainly: scale the features, run the per-synapse MLP, masked mean over
    the synapses, actor head on concat(h, pooled), critic on pooled."""
    feats, mask = obs[..., :-1], obs[..., -1]
    h = feats * policy.feature_scale
    for layer in policy.synapse_net:
        h = layer(h)
    pooled = (h * mask.unsqueeze(-1)).sum(-2) / mask.sum(-1, keepdim=True).clamp(min=1.0)
    both = torch.cat([h, pooled.unsqueeze(-2).expand_as(h)], -1)
    mean = policy.actor_head(both).squeeze(-1) * mask
    return mean, policy.critic(pooled).squeeze(-1)


@pytest.mark.parametrize("depth", [1, 2])
def test_forward_and_gradients_equal_the_plain_network_with_padding(depth):
    torch.manual_seed(0)
    policy = SynapsePolicy(PolicyConfig(num_features=5, hidden=6, depth=depth, action_gain=1.0)).double()
    policy.feature_scale.copy_(torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64))
    obs = torch.randn(7, 3, 5, dtype=torch.float64)
    obs[..., -1] = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]] * 2 + [[0, 0, 0]], dtype=torch.float64)
    obs[..., :-1] *= obs[..., -1:]  # padding slots carry zeros, as the env writes them
    grads_of = lambda: [p.grad.clone() for p in policy.parameters() if p.grad is not None]  # noqa: E731

    mean, _, value = policy(obs)
    ((mean * torch.linspace(-1, 2, 3)).sum() + value.pow(2).sum()).backward()
    fused = grads_of()
    policy.zero_grad()
    ref_mean, ref_value = _reference(policy, obs)
    ((ref_mean * torch.linspace(-1, 2, 3)).sum() + ref_value.pow(2).sum()).backward()

    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(value, ref_value)
    assert torch.all(mean[obs[..., -1] == 0] == 0)
    reference = grads_of()
    assert len(fused) == len(reference) == len(list(policy.parameters())) - 1  # all but the unused log-std
    for got, want in zip(fused, reference):
        torch.testing.assert_close(got, want)


def test_readout_backward_passes_gradcheck():
    torch.manual_seed(1)
    h = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(_Readout.apply, (h, w, weights))


def test_flat_observations_and_bad_widths():
    policy = SynapsePolicy(PolicyConfig(num_features=4, hidden=3, depth=1))
    obs = torch.randn(2, 3, 4)
    obs[..., -1] = 1.0
    for a, b in zip(policy(obs), policy(obs.reshape(2, 12))):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="multiple of num_features"):
        policy(torch.randn(2, 10))


@pytest.mark.parametrize("fused", ["1", "0"])
@pytest.mark.parametrize("ownership,depth", [("outgoing", 2), ("incoming", 1), ("outgoing", 3)])
def test_policy_gives_the_same_means_and_values_on_padded_and_block_layouts(monkeypatch, fused, ownership, depth):
    """One set of parameters: a network's agents padded to the largest fan (the RLlib path) and
    the same agents as ownership blocks without padding (fast path, evaluation) get the same
    action means and values, through the fused kernel and through torch."""
    from marl_net.config import EnvConfig
    from marl_net.fast.vector_env import VectorNetworkEnv

    monkeypatch.setenv("MARL_NET_FUSED", fused)
    config = EnvConfig(layers=(6, 11, 3), ownership=ownership, max_cycles=3)
    padded, blocks = VectorNetworkEnv(config, copies=2), VectorNetworkEnv(config, copies=2, layout="blocks")
    torch.manual_seed(1)
    policy = SynapsePolicy(PolicyConfig(num_features=padded.num_features, hidden=16, depth=depth, action_gain=1.0))
    obs, _ = padded.reset(seed=4)
    b_obs, _ = blocks.reset(seed=4)
    actions = torch.rand(2, padded.num_agents, padded.max_fan) - 0.5  # observations past the first step
    obs = padded.step(actions)[0]
    b_obs = blocks.step([a.flatten(0, 1) for a in padded.core.ownership.padded_to_blocks(actions)])[0]
    with torch.no_grad():
        mean, _, value = policy(obs)
        grid_mean = mean.view(2, padded.num_agents, padded.max_fan)
        grid_value = value.view(2, padded.num_agents)
        outs = policy.forward_blocks(b_obs)
    assert len(outs) == len(padded.blocks) == 2
    for (b_mean, b_log_std, b_value), b in zip(outs, padded.blocks):
        n = b.stop - b.start
        assert b_mean.shape == b_log_std.shape == (2 * n, b.fan)
        torch.testing.assert_close(b_mean.view(2, n, b.fan), grid_mean[:, b.start : b.stop, : b.fan],
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b_value.view(2, n), grid_value[:, b.start : b.stop], rtol=1e-5, atol=1e-6)
        assert torch.all(grid_mean[:, b.start : b.stop, b.fan :] == 0)  # padding acts not at all
        assert b_mean.abs().amax() > 1e-3  # the means are not trivially zero
