"""The fused per-synapse kernel equals the policy's torch path: outputs and every gradient, for
synapse networks of one to three layers."""

import pytest
import torch

from marl_net.policies import fused_layer
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy


def _obs(n: int, k: int, f: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, k, f, generator=g) * 2.0
    real = torch.randint(1, k + 1, (n,), generator=g)  # agents with fewer real synapses than slots
    mask = (torch.arange(k) < real.unsqueeze(1)).float()
    obs[..., -1] = 1.0
    return obs * mask.unsqueeze(-1)  # padding rows all zero, as the env writes them


def _outputs_and_grads(policy: SynapsePolicy, obs: torch.Tensor, actions: torch.Tensor):
    policy.zero_grad()
    mean, log_std, value = policy(obs)
    loss = ((mean - actions) ** 2).sum() + value.pow(2).sum() + log_std.sum()
    loss.backward()
    return [mean.detach(), value.detach()], {n: p.grad.clone() for n, p in policy.named_parameters()}


def test_the_kernel_builds_here():
    assert fused_layer.library() is not None, "g++ is on this machine: the kernel must build"


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("hidden", [16, 32, 48, 64])
@pytest.mark.parametrize("n,k", [(1, 1), (13, 5), (64, 16)])  # rows not a multiple of the kernel's 8 included
def test_fused_equals_torch_path(monkeypatch, depth, hidden, n, k):
    torch.manual_seed(hidden)
    policy = SynapsePolicy(PolicyConfig(num_features=10, hidden=hidden, depth=depth, action_gain=1.0))
    with torch.no_grad():
        policy.feature_scale.uniform_(0.5, 2.0)
        for deeper in list(policy.synapse_net)[2::2]:
            deeper.bias.uniform_(-0.5, 0.5)  # padding rows then reach the readout as tanh(bias), not 0
    obs = _obs(n, k, 10)
    actions = torch.randn(n, k)
    assert fused_layer.applies(obs, hidden, depth=depth)
    fused_out, fused_grads = _outputs_and_grads(policy, obs, actions)
    monkeypatch.setenv("MARL_NET_FUSED", "0")
    assert not fused_layer.applies(obs, hidden, depth=depth)
    torch_out, torch_grads = _outputs_and_grads(policy, obs, actions)
    for a, b in zip(fused_out, torch_out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert set(fused_grads) == set(torch_grads)
    for name in torch_grads:
        scale = torch_grads[name].abs().max().clamp(min=1e-3)
        torch.testing.assert_close(fused_grads[name] / scale, torch_grads[name] / scale, rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("depth", [1, 2])
def test_padding_slots_have_zero_mean_and_no_pull_on_the_pool(depth):
    policy = SynapsePolicy(PolicyConfig(num_features=4, hidden=16, depth=depth, action_gain=1.0))
    obs = _obs(1, 6, 4)
    obs[0, 3:] = 0.0
    mean, _, value = policy(obs)
    assert torch.all(mean[0, 3:] == 0)
    # the same agent without its padding slots: same mean on the real ones, same value
    mean3, _, value3 = policy(obs[:, :3])
    torch.testing.assert_close(mean[:, :3], mean3)
    torch.testing.assert_close(value, value3)


def test_where_the_kernel_does_not_apply_the_torch_path_runs():
    obs = _obs(4, 3, 5)
    assert not fused_layer.applies(obs.double(), 16)  # float64
    assert not fused_layer.applies(obs, 24)  # hidden not a multiple of 16
    assert not fused_layer.applies(obs, 16, torch.float64)  # a float64 policy
    assert not fused_layer.applies(torch.zeros(2, 2, fused_layer.MAX_FEATURES + 1), 16)  # too many features
    assert not fused_layer.applies(obs, 16, depth=fused_layer.MAX_DEPTH + 1)  # too deep
    assert not fused_layer.applies(obs.requires_grad_(), 16)  # gradients wanted for the observations
    policy = SynapsePolicy(PolicyConfig(num_features=5, hidden=24, depth=1))
    mean, _, value = policy(_obs(4, 3, 5))
    assert mean.shape == (4, 3) and torch.isfinite(value).all()


def test_shapes_the_kernel_refuses_raise_a_value_error():
    obs = _obs(2, 2, 4)
    with pytest.raises(ValueError, match="not covered by the fused kernel"):
        fused_layer.synapse_layer(obs, torch.zeros(4, 24), torch.zeros(24), torch.ones(2, 2), torch.zeros(0, 24, 24),
                                  torch.zeros(0, 24))


def test_the_build_is_cached_per_source(tmp_path, monkeypatch):
    monkeypatch.setenv("MARL_NET_KERNEL_CACHE", str(tmp_path))
    first = fused_layer.build()
    assert first.parent == tmp_path and first.exists()
    stamp = first.stat().st_mtime_ns
    assert fused_layer.build() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
