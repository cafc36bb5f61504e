"""The fused actor-critic kernel (PPO's learner and acting, synapse networks of one to three layers
on the CPU) equals the policy's torch path: log-densities, entropies, values, every parameter's gradient, and
the sampled actions; its one-pass PPO minibatch gives autograd's gradient of PPO's loss; a fast-PPO
iteration through it lands where the torch path's does."""

from __future__ import annotations

import pytest
import torch

from marl_net.fast.ppo import FastPPO, FastPPOConfig
from marl_net.policies import fused_actor_critic
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy, masked_log_prob


def _policy(hidden: int, f: int = 6, seed: int = 0, depth: int = 1) -> SynapsePolicy:
    torch.manual_seed(seed)
    policy = SynapsePolicy(PolicyConfig(num_features=f, hidden=hidden, depth=depth, action_gain=1.0,
                                        init_log_std=-0.7))
    with torch.no_grad():
        policy.feature_scale.uniform_(0.5, 2.0)
        for deeper in list(policy.synapse_net)[2::2]:
            deeper.bias.uniform_(-0.5, 0.5)  # padding rows then reach the readout as tanh(bias), not 0
    return policy


def _obs(s: int, k: int, f: int, seed: int = 1) -> torch.Tensor:
    """Agents with 0..k real synapses (padding rows all zero, the mask column last)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(s, k, f, generator=g)
    real = torch.randint(0, k + 1, (s,), generator=g)
    obs[..., -1] = 1.0
    return obs * (torch.arange(k) < real.unsqueeze(1)).float().unsqueeze(-1)


def _loss_terms(policy, obs, actions, index):
    policy.zero_grad()
    logp, entropy, value = policy.log_prob_entropy_value(obs, actions, index)
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(len(index), generator=g) for _ in range(3)]
    (weights[0] * logp + weights[1] * entropy + weights[2] * value).sum().backward()
    return [t.detach() for t in (logp, entropy, value)], {n: p.grad.clone() for n, p in policy.named_parameters()}


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("hidden", [16, 32, 64])
@pytest.mark.parametrize("s,k,n", [(40, 5, 13), (300, 16, 257), (7, 1, 7)])  # agents not a multiple of 8 included
def test_fused_log_prob_entropy_value_and_gradients_equal_the_torch_path(monkeypatch, depth, hidden, s, k, n):
    policy, obs = _policy(hidden, depth=depth), _obs(s, k, 6)
    actions = torch.randn(s, k) * obs[..., -1]
    index = torch.randint(0, s, (n,), generator=torch.Generator().manual_seed(3))  # unsorted, repeats
    assert fused_actor_critic.applies(policy, obs)
    fused_out, fused_grads = _loss_terms(policy, obs, actions, index)
    monkeypatch.setenv("MARL_NET_FUSED", "0")
    assert not fused_actor_critic.applies(policy, obs)
    torch_out, torch_grads = _loss_terms(policy, obs, actions, index)
    for name, a, b in zip(("logp", "entropy", "value"), fused_out, torch_out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")
    assert set(fused_grads) == set(torch_grads)
    for name, want in torch_grads.items():
        scale = want.abs().max().clamp(min=1e-3)
        torch.testing.assert_close(fused_grads[name] / scale, want / scale, rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("depth", [1, 2])
def test_fused_sampling_draws_the_torch_paths_actions(depth):
    policy, obs = _policy(16, depth=depth), _obs(50, 16, 6)
    noise = torch.randn(50, 16)
    actions = torch.empty(50, 16)
    logp, value = fused_actor_critic.sample(policy, obs, noise, actions)
    with torch.no_grad():
        mean, log_std, want_value = policy(obs)
    mask = obs[..., -1]
    want = (mean + torch.exp(log_std) * noise) * mask
    torch.testing.assert_close(actions, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logp, masked_log_prob(want, mean, log_std, mask), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(value, want_value, rtol=1e-4, atol=1e-5)
    assert torch.all(actions[mask == 0] == 0)


def test_bad_index_and_shapes_are_refused():
    policy, obs = _policy(16), _obs(10, 4, 6)
    actions = torch.zeros(10, 4)
    with pytest.raises(ValueError, match="index out of range"):
        fused_actor_critic.log_prob_and_value(policy, obs, actions, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="index out of range"):
        fused_actor_critic.log_prob_and_value(policy, obs, actions, torch.tensor([-1]))
    with pytest.raises(ValueError, match="want"):
        fused_actor_critic.log_prob_and_value(policy, obs, actions[:, :3], torch.tensor([0]))
    with pytest.raises(ValueError, match="must be"):
        fused_actor_critic.sample(policy, obs, torch.zeros(10, 3), actions)


def test_only_cpu_float32_policies_of_covered_sizes_take_the_kernel():
    obs = _obs(4, 3, 6)
    assert fused_actor_critic.applies(SynapsePolicy(PolicyConfig(num_features=6, hidden=16, depth=3)), obs)
    assert not fused_actor_critic.applies(SynapsePolicy(PolicyConfig(num_features=6, hidden=16, depth=4)), obs)
    assert not fused_actor_critic.applies(SynapsePolicy(PolicyConfig(num_features=6, hidden=24, depth=1)), obs)
    assert not fused_actor_critic.applies(_policy(16), obs.double())


def _ppo_loss(logp, value, old_logp, adv, returns, clip=0.2, vf_coef=0.5):
    """PPO's minibatch loss as fast PPO writes it in torch (its gradient through autograd)."""
    ratio = (logp - old_logp).exp()
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    return pg + vf_coef * 0.5 * (value - returns).pow(2).mean()


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("hidden", [16, 64])
@pytest.mark.parametrize("s,k,n", [(40, 5, 13), (400, 16, 300), (1200, 1, 1100)])  # 16: several chunks of rows
def test_the_fused_ppo_minibatch_gradient_equals_autograd_through_the_loss(depth, hidden, s, k, n):
    policy, obs = _policy(hidden, depth=depth), _obs(s, k, 6)
    actions = torch.randn(s, k) * obs[..., -1]
    g = torch.Generator().manual_seed(4)
    index = torch.randperm(s, generator=g)[:n]
    with torch.no_grad():
        logp, value, _ = fused_actor_critic.log_prob_and_value(policy, obs, actions, index)
    old_logp = logp + 0.4 * torch.randn(n, generator=g)  # ratios inside and outside the clip range
    adv, returns = torch.randn(n, generator=g), value + torch.randn(n, generator=g)
    policy.zero_grad()
    logp, value, _ = fused_actor_critic.log_prob_and_value(policy, obs, actions, index)
    _ppo_loss(logp, value, old_logp, adv, returns).backward()
    want = {name: p.grad.clone() for name, p in policy.named_parameters()}
    assert ((logp - old_logp).exp() - 1).abs().gt(0.2).any() and ((logp - old_logp).exp() - 1).abs().lt(0.2).any()
    policy.zero_grad()
    # two blocks of one minibatch: each scaled by the whole minibatch's size, gradients summed
    half = n // 2
    anchor = sum(fused_actor_critic.ppo_minibatch(policy, obs, actions, index[part], old_logp[part], adv[part],
                                                  returns[part], 0.2, 0.5, 1.0 / n)[0]
                 for part in (slice(0, half), slice(half, n)))
    anchor.backward()
    for name, p in policy.named_parameters():
        got = torch.zeros_like(p) if p.grad is None else p.grad
        scale = want[name].abs().max().clamp(min=1e-3)
        torch.testing.assert_close(got / scale, want[name] / scale, rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"{name}: {m}")
    out = fused_actor_critic.ppo_minibatch(policy, obs, actions, index, old_logp, adv, returns, 0.2, 0.5, 1.0 / n)
    torch.testing.assert_close(out[1], logp.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[2], value.detach(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="like index"):
        fused_actor_critic.ppo_minibatch(policy, obs, actions, index, old_logp[1:], adv, returns, 0.2, 0.5, 1.0)


def _one_iteration(monkeypatch, fused: bool, depth: int) -> FastPPO:
    monkeypatch.setenv("MARL_NET_FUSED", "1" if fused else "0")
    env = {"layers": (5, 9, 3), "max_cycles": 4, "batch_size": 8, "reward": "difference"}
    ppo = FastPPOConfig(copies=4, rollout_steps=6, minibatch_size=64, num_epochs=2, lr=3e-3)
    trainer = FastPPO(env, {"hidden": 16, "depth": depth}, ppo, seed=0)
    assert fused_actor_critic.applies(trainer.policy, trainer.obs[0]) == fused
    trainer.train()
    return trainer


@pytest.mark.parametrize("depth", [1, 2])
def test_a_fast_ppo_iteration_through_the_kernel_lands_where_the_torch_path_does(monkeypatch, depth):
    fused, plain = _one_iteration(monkeypatch, True, depth), _one_iteration(monkeypatch, False, depth)
    # same draws, arithmetic equal to float rounding: the same rollout and nearly the same update
    for a, b in zip(fused.buffer.actions, plain.buffer.actions):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.buffer.rewards, plain.buffer.rewards, rtol=1e-4, atol=1e-6)
    for (name, a), b in zip(fused.policy.state_dict().items(), plain.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=lambda m: f"{name} after one iteration: {m}")


def test_kernel_threads_change_no_result_bit_for_bit():
    """Acting and PPO minibatches spread over threads (agents split when acting, chunks of a
    minibatch computed apart and summed in chunk order) give exactly the one-thread results."""
    from marl_net import numerics

    policy, obs = _policy(32, depth=2), _obs(600, 16, 6)  # 600 agents: several threads' worth, many chunks
    g = torch.Generator().manual_seed(5)
    noise, index = torch.randn(600, 16, generator=g), torch.randperm(600, generator=g)[:500]
    old_logp, adv, returns = (torch.randn(500, generator=g) for _ in range(3))
    runs = []
    for threads in (1, 2, 3):
        numerics.set_kernel_threads(threads)
        try:
            actions = torch.empty(600, 16)
            logp, value = fused_actor_critic.sample(policy, obs, noise, actions)
            policy.zero_grad()
            anchor, *outs = fused_actor_critic.ppo_minibatch(policy, obs, actions, index, old_logp, adv, returns, 0.2,
                                                             0.5, 1 / 500)
            anchor.backward()
        finally:
            numerics.set_kernel_threads(1)
        runs.append([actions, logp, value, *outs, *(p.grad.clone() for p in policy.parameters() if p.grad is not None)])
    assert len(runs[0]) > 6 and runs[0][-1].abs().sum() > 0
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))
