"""The recurrent shared policies (``PolicyConfig(memory="gru")``: a state per synapse row;
``"gru_neuron"``: a state per neuron) on the fast path: settings refused, state zero at every inner
reset, the learner's recomputation equal to the rollout, determinism and resume, the RLlib module
(interchange), the memory-use check. The guarantees are checked for both kinds."""

from __future__ import annotations

import pytest
import torch

from marl_net.fast.ppo import FastPPO, FastPPOConfig
from marl_net import numerics
from marl_net.policies.neuron_memory import NeuronMemoryPolicy
from marl_net.policies.recurrent_policy import RecurrentSynapsePolicy, gru_update, make_policy
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy, masked_log_prob

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV = {"layers": (3, 5, 2), "max_cycles": 6}
POLICY = {"hidden": 8, "depth": 1, "memory": "gru", "memory_size": 4}  # depth as in rllib_memory_quick.yaml
PPO = dict(copies=4, minibatch_size=48, num_epochs=2)
NEURON = {**POLICY, "memory": "gru_neuron"}
KINDS = {"gru": POLICY, "gru_neuron": NEURON}


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.state_dict().values()]


@pytest.mark.parametrize("kwargs, words", [
    ({"memory": "lstm"}, ["'none'", "'gru'", "'gru_neuron'"]),
    ({"memory": "gru_neuron", "memory_size": 0}, ["memory_size", ">= 1"]),
    ({"memory": "gru", "memory_size": 0}, ["memory_size", ">= 1"]),
    ({"memory": "gru", "memory_size": 2.5}, ["memory_size", "integer"]),
    ({"memory": "gru", "memory_size": -3}, ["memory_size", ">= 1"]),
])
def test_bad_memory_settings_are_refused_with_the_choices_named(kwargs, words):
    with pytest.raises(ValueError) as err:
        PolicyConfig(num_features=3, **kwargs)
    assert all(w in str(err.value) for w in words)


def test_the_feed_forward_class_refuses_a_recurrent_config_and_make_policy_picks_the_class():
    config = PolicyConfig(num_features=3, memory="gru")
    with pytest.raises(ValueError, match="make_policy"):
        SynapsePolicy(config)
    assert isinstance(make_policy(config), RecurrentSynapsePolicy)
    neuron = PolicyConfig(num_features=3, memory="gru_neuron")
    assert isinstance(make_policy(neuron), NeuronMemoryPolicy)
    for cls, wrong in ((NeuronMemoryPolicy, config), (RecurrentSynapsePolicy, neuron)):
        with pytest.raises(ValueError, match="make_policy"):
            cls(wrong)
    assert type(make_policy(PolicyConfig(num_features=3))) is SynapsePolicy
    with pytest.raises(ValueError, match="policy settings"):
        FastPPO(ENV, {"memroy": "gru"}, FastPPOConfig(**PPO))


def test_memory_none_is_todays_policy_bit_for_bit():
    """The default and an explicit ``memory="none"`` build the same parameters and train alike."""
    a = FastPPO(ENV, {"hidden": 8}, FastPPOConfig(**PPO), seed=1)
    b = FastPPO(ENV, {"hidden": 8, "memory": "none", "memory_size": 3}, FastPPOConfig(**PPO), seed=1)
    assert a.recurrent is None and b.recurrent is None
    ma, mb = a.train(), b.train()
    assert ma["policy_loss"] == mb["policy_loss"] and ma["value_loss"] == mb["value_loss"]
    assert all(torch.equal(x, y) for x, y in zip(_params(a.policy), _params(b.policy)))


def test_gru_update_is_torchs_gru_cell_and_unroll_equals_stepping():
    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(num_features=4, hidden=5, memory="gru", memory_size=3, action_gain=1.0)).double()
    x, h = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    gates_in = torch.nn.functional.linear(x, policy.memory.weight_ih, policy.memory.bias_ih)
    torch.testing.assert_close(gru_update(gates_in, h, policy.memory), policy.memory(x, h))

    obs = torch.randn(5, 6, 4, 4, dtype=torch.float64)
    obs[..., -1] = (torch.rand(5, 6, 4) > 0.3).double()
    obs[..., :-1] *= obs[..., -1:]
    starts = torch.zeros(5, 6, dtype=torch.bool)
    starts[3, :2] = True  # rows 0 and 1 begin a new episode at step 3
    state = policy.initial_state(obs[0])
    stepped = []
    for t in range(5):
        if t == 3:
            state = state.clone()
            state[:2] = 0
        mean, log_std, value, state = policy(obs[t], state)
        stepped.append((mean, value))
        assert torch.all(state[obs[t][..., -1] == 0] == 0)  # padding slots keep a zero state
    mean, _, value, last = policy.unroll(obs, policy.initial_state(obs[0]), starts)
    torch.testing.assert_close(mean, torch.stack([m for m, _ in stepped]))
    torch.testing.assert_close(value, torch.stack([v for _, v in stepped]))
    torch.testing.assert_close(last, state)
    with pytest.raises(ValueError, match="initial_state"):
        policy(obs[0], torch.zeros(6, 4, 2, dtype=torch.float64))


@pytest.mark.parametrize("padding", [False, True])
def test_unroll_through_the_sequence_recurrence_equals_the_stepwise_one_with_resets_inside(padding):
    """torch's multi-step ``nn.GRU`` run with the cell's parameters over the stretches between
    resets (padding slots with the same mask at every step) against stepping the GRU update:
    values, final state and every parameter's gradient, with rows reset at steps 0, 2 and 4 and
    non-zero start states."""
    torch.manual_seed(2)
    policy = make_policy(PolicyConfig(num_features=4, hidden=5, memory="gru", memory_size=3, action_gain=1.0)).double()
    obs = torch.randn(6, 5, 4, 4, dtype=torch.float64)
    obs[..., -1] = (torch.rand(1, 5, 4) > 0.3).double().expand(6, 5, 4) if padding else 1.0
    obs[..., :-1] *= obs[..., -1:]
    starts = torch.zeros(6, 5, dtype=torch.bool)
    starts[0, 1], starts[2, :2], starts[4, 3] = True, True, True
    state0 = torch.randn(5, 4, 3, dtype=torch.float64) * obs[0, ..., -1:]
    outs = {}
    for sequence in (True, False):
        policy.sequence_recurrence = sequence
        policy.zero_grad()
        mean, _, value, last = policy.unroll(obs, state0, starts)
        (mean.pow(2).sum() + value.sum() + last.sum()).backward()
        outs[sequence] = (mean, value, last, [p.grad.clone() for p in policy.parameters() if p.grad is not None])
    for ours, stepped in zip(outs[True][:3], outs[False][:3]):
        torch.testing.assert_close(ours, stepped)
    assert len(outs[True][3]) == len(outs[False][3])
    for ours, stepped in zip(outs[True][3], outs[False][3]):
        torch.testing.assert_close(ours, stepped)


def test_neuron_memory_unroll_equals_stepping_through_resets_padding_and_either_synapse_path():
    """``memory="gru_neuron"``: one state per agent; :meth:`unroll` (the synapse network once over
    the sequence, ``nn.GRU`` between resets) equals stepping :meth:`forward` with rows reset at step
    3 and non-zero start states, padding slots get a zero mean, the fused synapse kernel and the torch
    path give the same outputs and gradients, and steps padded at a sequence's end (RLlib's) leave
    the real steps' outputs as they are."""
    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(num_features=4, hidden=16, memory="gru_neuron", memory_size=3, action_gain=1.0))
    with torch.no_grad():
        policy.gain.weight.normal_()  # a state that scales the synapses' own proposals (zero at init)
    obs = torch.randn(5, 6, 4, 4)
    obs[..., -1] = (torch.rand(1, 6, 4) > 0.3).float().expand(5, 6, 4)
    obs[..., :-1] *= obs[..., -1:]
    starts = torch.zeros(5, 6, dtype=torch.bool)
    starts[3, :2] = True  # rows 0 and 1 begin a new episode at step 3
    state0 = torch.randn(6, 3)
    assert policy.initial_state(obs[0]).shape == (6, 3) and policy.state_shape(4) == (3,)
    state, stepped = state0, []
    with torch.no_grad():
        for t in range(5):
            if t == 3:
                state = state.clone()
                state[:2] = 0
            mean, _, value, state = policy(obs[t], state)
            stepped.append((mean, value))
            assert torch.all(mean[obs[t][..., -1] == 0] == 0)
    grads = {}
    for kernels in (True, False):
        with numerics.kernels(kernels), numerics.recording() as ran:
            policy.zero_grad()
            mean, log_std, value, last = policy.unroll(obs, state0, starts)
            (mean.pow(2).sum() + value.sum() + last.sum() + log_std.sum()).backward()
        assert (numerics.POLICY_KERNEL in ran) == kernels
        grads[kernels] = [p.grad.clone() for p in policy.parameters()]
        torch.testing.assert_close(mean, torch.stack([m for m, _ in stepped]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(value, torch.stack([v for _, v in stepped]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(last, state, rtol=1e-5, atol=1e-6)
    assert all(g.abs().sum() > 0 for g in grads[True])  # every parameter is used
    for fused, plain in zip(grads[True], grads[False]):
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        padded_starts = torch.cat([starts, torch.zeros(2, 6, dtype=torch.bool)])
        tail = policy.unroll(torch.cat([obs, torch.zeros(2, 6, 4, 4)]), state0, padded_starts)
    torch.testing.assert_close(tail[0][:5], mean.detach())
    torch.testing.assert_close(tail[2][:5], value.detach())
    assert torch.all(tail[0][5:] == 0)
    with pytest.raises(ValueError, match="initial_state"):
        policy(obs[0], torch.zeros(6, 4, 3))


def test_gru_sequence_backward_is_autograds_through_resets():
    """``GRUSequence`` (the per-neuron memory's BPTT, written by hand): its states equal torch's
    ``nn.GRU`` run stretch by stretch (``run_gru``), and gradcheck holds its backward equal to the
    numerical gradient for the input gates, the start state and ``W_hh``, ``b_hh``, with rows reset
    at steps 0 and 3 (float64)."""
    from marl_net.policies.recurrence import GRUSequence, gru_sequence, gru_shell, run_gru

    torch.manual_seed(0)
    cell = torch.nn.GRUCell(5, 3).double()
    seq = torch.randn(6, 7, 5, dtype=torch.float64)
    state = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    starts = torch.zeros(6, 7, dtype=torch.bool)
    starts[0, 1], starts[3, :2] = True, True
    torch.testing.assert_close(gru_sequence(cell, seq, state, starts),
                               run_gru(gru_shell(torch.nn.Module(), cell), cell, seq, state, starts))
    gates_in = torch.nn.functional.linear(seq, cell.weight_ih, cell.bias_ih).detach().requires_grad_()
    keep = (~starts).double().unsqueeze(-1)
    assert torch.autograd.gradcheck(lambda g, s, w, b: GRUSequence.apply(g, s, keep, w, b),
                                    (gates_in, state, cell.weight_hh, cell.bias_hh))
    assert torch.autograd.gradcheck(lambda g, s, w, b: GRUSequence.apply(g, s, None, w, b),
                                    (gates_in, state, cell.weight_hh, cell.bias_hh))



def test_the_fused_gru_kernel_equals_the_torch_loop_forward_and_backward():
    """``policies/gru_kernel.cpp`` (float32, state width 16 and 32) against ``GRUSequence``'s torch
    loop: states, the input's, the start state's and every GRU parameter's gradient, with resets
    at steps 0 and 3, to float rounding (the kernel's tanh is a rational approximation)."""
    from marl_net.policies import fused_gru
    from marl_net.policies.recurrence import gru_sequence

    for width in (16, 32):
        torch.manual_seed(width)
        cell = torch.nn.GRUCell(8, width)
        seq, state = torch.randn(6, 70, 8), torch.randn(70, width)
        starts = torch.zeros(6, 70, dtype=torch.bool)
        starts[0, 1], starts[3, :20] = True, True
        weights = torch.randn(6, 70, width)
        outs = {}
        for kernels in (True, False):
            with numerics.kernels(kernels), numerics.recording() as ran:
                cell.zero_grad()
                x, h = seq.clone().requires_grad_(), state.clone().requires_grad_()
                states = gru_sequence(cell, x, h, starts)
                (states * weights).sum().backward()
            assert (fused_gru.KERNEL in ran) == kernels
            outs[kernels] = [states.detach(), x.grad, h.grad] + [p.grad.clone() for p in cell.parameters()]
        for fused, plain in zip(outs[True], outs[False]):
            torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)


def test_a_row_of_the_fused_gru_kernel_computes_alike_in_every_row_block():
    """The kernel steps a few rows at a time (``forward_block``, ``backward_block``) and the
    remainder one by one: dropping the first row shifts every row into another block, and the
    kernel's every output for it, forward and backward, stays the same bit for bit."""
    from marl_net.policies import fused_gru

    for width in (16, 32, 48, 64):
        g = torch.Generator().manual_seed(width)
        steps, rows = 5, 37
        gates_in, state = torch.randn(steps, rows, 3 * width, generator=g), torch.randn(rows, width, generator=g)
        keep = (torch.rand(steps, rows, 1, generator=g) > 0.3).float()
        weight_hh, bias_hh = torch.randn(3 * width, width, generator=g) / width ** 0.5, torch.randn(3 * width, generator=g)
        grad = torch.randn(steps, rows, width, generator=g)
        outs = []
        for r in (slice(0, rows), slice(1, rows)):
            with numerics.kernels(True):
                assert fused_gru.applies(gates_in, weight_hh)
                fwd = fused_gru.forward(gates_in[:, r].contiguous(), state[r].contiguous(), keep[:, r].contiguous(),
                                        weight_hh, bias_hh)
                bwd = fused_gru.backward(grad[:, r].contiguous(), *fwd, keep[:, r].contiguous(), weight_hh)
            outs.append([*fwd, *bwd])
        for every_row, shifted in zip(*outs):
            assert torch.equal(every_row[..., 1:, :] if every_row.dim() == 3 else every_row[1:], shifted)


def _trainer(seed=0, kind="gru", **ppo):
    return FastPPO(ENV, KINDS[kind], FastPPOConfig(**{**PPO, **ppo}), seed=seed)


def _episode_log_probs(trainer, block: int, rows: torch.Tensor, steps: slice) -> torch.Tensor:
    """The rollout's log-densities of block ``block``'s rows, recomputed by stepping the policy from
    a zero state over ``steps`` (one inner episode)."""
    buf = trainer.buffer
    obs, actions = buf.obs[block][steps][:, rows], buf.actions[block][steps][:, rows]
    mean, log_std, _, _ = trainer.policy.unroll(obs, trainer.policy.initial_state(obs[0]))
    return masked_log_prob(actions, mean, log_std, obs[..., -1])


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_is_zero_at_every_inner_reset_including_a_partial_autoreset(kind):
    """Copy 0 is moved 3 steps into its episode, so it is autoreset alone in the middle of the
    rollout. Every inner episode in the rollout, its new one included, must match the policy run
    from a zero state; a state carried over the reset would change copy 0's later log-densities."""
    trainer = _trainer(kind=kind, rollout_steps=6)
    trainer.env.core.t[0] = 3  # copy 0 truncates after 3 steps, the others after 6
    with torch.no_grad():
        trainer.recurrent.collect()
        env, buf, rec = trainer.env, trainer.buffer, trainer.recurrent
        ends = buf.ends.view(6, env.copies, env.num_agents)[:, :, 0]
        assert ends[2].tolist() == [True, False, False, False] and ends[5].tolist() == [False, True, True, True]
        assert all(torch.all(s.view(env.copies, -1)[1:] == 0) for s in rec.state)  # reset at the last step
        assert all(torch.any(s.view(env.copies, -1)[0] != 0) for s in rec.state)  # copy 0 is 3 steps in
        for i, b in enumerate(env.blocks):
            n = b.stop - b.start
            logp = buf.logp.view(6, env.copies, env.num_agents)[:, :, b.start : b.stop]
            copy0, others = torch.arange(n), torch.arange(n, env.copies * n)
            torch.testing.assert_close(_episode_log_probs(trainer, i, copy0, slice(0, 3)), logp[:3, 0])
            torch.testing.assert_close(_episode_log_probs(trainer, i, copy0, slice(3, 6)), logp[3:, 0])
            torch.testing.assert_close(_episode_log_probs(trainer, i, others, slice(0, 6)),
                                       logp[:, 1:].reshape(6, -1))
            stale = trainer.policy.unroll(buf.obs[i][:, copy0], trainer.policy.initial_state(buf.obs[i][0, copy0]))
            stale_logp = masked_log_prob(buf.actions[i][3:, copy0], stale[0][3:], stale[1][3:], buf.obs[i][3:, copy0, :, -1])
            assert not torch.allclose(stale_logp, logp[3:, 0], atol=1e-5)  # the reset matters here


@pytest.mark.parametrize("kind", list(KINDS))
def test_learner_recomputes_the_rollouts_log_probs_from_the_kept_start_states(kind):
    """Rollouts of 4 steps in 6-step episodes: the second rollout starts in the middle of every
    episode (non-zero start states) and contains a reset. Before any update the learner's sequences,
    unrolled from the kept start states, give the rollout's log-densities and values: PPO's ratio
    starts at 1."""
    trainer = _trainer(kind=kind, rollout_steps=4)
    trainer.train()
    with torch.no_grad():
        next_value, _ = trainer.recurrent.collect()
    from marl_net.fast.rollout import gae

    buf = trainer.buffer
    adv, returns = gae(buf.rewards, buf.values, buf.ends, buf.end_values, next_value, 0.99, 0.95)
    groups = trainer.recurrent.sequences(adv, returns)
    assert any(g["starts"].any() for g in groups) and all(bool(g["state"].abs().sum() > 0) for g in groups)
    env = trainer.env
    values = buf.values.view(4, env.copies, env.num_agents)
    idxs = [torch.randperm(g["state"].shape[0])[:5] for g in groups]  # a few sequences, in any order
    with torch.no_grad():
        evaluated = trainer.recurrent.evaluate(groups, idxs)
    for g, b, idx, (logp, _, value) in zip(groups, env.blocks, idxs, evaluated):
        torch.testing.assert_close(logp, g["logp"][:, idx], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(value, values[:, :, b.start : b.stop].reshape(4, -1)[:, idx], rtol=1e-5, atol=1e-5)
    metrics = trainer.recurrent.learn(adv, returns)
    assert abs(metrics["old_approx_kl"]) < 0.05  # the update moved the policy a little, not a lot


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_seed_same_result_and_resume_equals_uninterrupted(tmp_path, kind):
    a, b = _trainer(3, kind, rollout_steps=4), _trainer(3, kind, rollout_steps=4)
    for _ in range(2):
        ma, mb = a.train(), b.train()
        assert ma["policy_loss"] == mb["policy_loss"] and ma["value_loss"] == mb["value_loss"]
    assert all(torch.equal(x, y) for x, y in zip(_params(a.policy), _params(b.policy)))
    c = _trainer(4, kind, rollout_steps=4)
    assert not all(torch.equal(x, y) for x, y in zip(_params(a.policy), _params(c.policy)))

    a.save(str(tmp_path))  # mid-episode: the rollout of 4 steps left every copy 2 steps into an episode
    assert any(bool(s.abs().sum() > 0) for s in a.recurrent.state)
    from marl_net.evaluation import rollout_losses
    from marl_net.fast import checkpoints

    loaded, env_config = checkpoints.load_policy(checkpoints.find(tmp_path))  # what `marl-net eval` loads
    assert type(loaded) is type(a.policy) and loaded.config.memory == kind
    assert torch.equal(rollout_losses(loaded, a.env.config, episodes=3, seed=1),
                       rollout_losses(a.policy, a.env.config, episodes=3, seed=1))
    resumed = _trainer(99, kind, rollout_steps=4)
    resumed.restore(str(tmp_path))
    for _ in range(2):
        ma, mr = a.train(), resumed.train()
        assert ma["policy_loss"] == mr["policy_loss"] and ma["episode_return_mean"] == mr["episode_return_mean"]
    assert all(torch.equal(x, y) for x, y in zip(_params(a.policy), _params(resumed.policy)))
    assert all(torch.equal(x, y) for x, y in zip(a.recurrent.state, resumed.recurrent.state))


# ---------------------------------------------------------------- the RLlib module (interchange, launch)
def _module(trainer, policy_settings=POLICY):
    from marl_net.envs import network_weights_v0
    from marl_net.policies.rllib_module import SynapseRLModule

    env = network_weights_v0.parallel_env(**ENV)
    agent = env.possible_agents[0]
    return SynapseRLModule(observation_space=env.observation_space(agent), action_space=env.action_space(agent),
                           model_config={**policy_settings, "max_seq_len": ENV["max_cycles"]})


def _padded(trainer, per_block: list[torch.Tensor]) -> torch.Tensor:
    """Per-block trimmed rollout tensors ``[T, E * n_b, fan_b, ...]`` -> RLlib's padded agent rows
    ``[E * A, T, K * ...]`` (zeros on padding slots, as the env's observations)."""
    env, t = trainer.env, trainer.steps
    tail = per_block[0].shape[3:]
    grid = per_block[0].new_zeros(t, env.copies, env.num_agents, env.max_fan, *tail)
    for x, b in zip(per_block, env.blocks):
        grid[:, :, b.start : b.stop, : b.fan] = x.view(t, env.copies, b.stop - b.start, b.fan, *tail)
    return grid.flatten(1, 2).transpose(0, 1).flatten(2)


def _assert_module_matches_fast_rollout(trainer, module):
    """One fast-path rollout (one whole inner episode per copy, from zero states) against the RLlib
    module fed the same observation sequences: the same log-densities of the taken actions and the
    same values, both over the whole sequence (``forward_train``) and step by step with
    ``STATE_IN``/``STATE_OUT`` carried (``forward_inference``, the env runner's way)."""
    from ray.rllib.core.columns import Columns

    from marl_net.policies.rllib_module import MaskedDiagGaussian

    with torch.no_grad():
        trainer.recurrent.collect()
        buf, t = trainer.buffer, trainer.steps
        assert not buf.ends[:-1].any()  # one inner episode per copy in this rollout
        obs, actions = _padded(trainer, buf.obs), _padded(trainer, buf.actions)  # [N, T, .]
        state = {k: torch.from_numpy(v).expand(obs.shape[0], *v.shape).clone()
                 for k, v in module.get_initial_state().items()}
        out = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: state})
        dist = MaskedDiagGaussian.from_logits(out[Columns.ACTION_DIST_INPUTS])
        torch.testing.assert_close(dist.logp(actions), buf.logp.T, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[Columns.EMBEDDINGS], buf.values.T, rtol=1e-5, atol=1e-5)
        for step in range(t):
            step_out = module.forward_inference({Columns.OBS: obs[:, step : step + 1], Columns.STATE_IN: state})
            state = step_out[Columns.STATE_OUT]
            torch.testing.assert_close(step_out[Columns.ACTION_DIST_INPUTS][:, 0],
                                       out[Columns.ACTION_DIST_INPUTS][:, step], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_rule_trained_on_the_fast_path_acts_alike_in_the_rllib_module(kind):
    trainer = _trainer(seed=2, kind=kind)
    trainer.train()  # trained: parameters moved from their initial values
    module = _module(trainer, KINDS[kind])
    shape = (trainer.env.max_fan, 4) if kind == "gru" else (4,)  # per synapse slot, or per neuron
    assert module.is_stateful() and module.get_initial_state()["h"].shape == shape
    module.policy.load_state_dict(trainer.policy.state_dict())
    _assert_module_matches_fast_rollout(trainer, module)


@pytest.mark.parametrize("kind", list(KINDS))
def test_recurrent_rllib_launch_trains_two_iterations_checkpoints_and_its_rule_runs_on_the_fast_path(
        ray_session, tmp_path, kind):
    """``experiments/configs/rllib_memory_quick.yaml`` (made tinier here) trains the stateful module
    for two iterations with one remote env runner and checkpoints; the rule in that checkpoint,
    loaded into the fast path's recurrent trainer, gives the RLlib module's log-densities and
    values on the fast path's rollout."""
    import json
    from pathlib import Path

    from marl_net import cli
    from marl_net.rllib.checkpoints import load_module

    config = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "rllib_memory_quick.yaml"
    small = [f"env.layers={list(ENV['layers'])}", f"env.max_cycles={ENV['max_cycles']}", "policy.hidden=8",
             "policy.memory_size=4", "ppo.train_batch_size=120", "ppo.minibatch_size=60", f"policy.memory={kind}"]
    rc = cli.main(["tune", "--config", str(config), "--set", f"run.storage_path={tmp_path}",
                   *sum([["--set", s] for s in small], [])])
    assert rc == 0
    (trial,) = list((tmp_path / "rllib_memory_quick").glob("PPO_*"))
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert results[-1]["fault_tolerance"]["num_healthy_workers"] == 1  # the remote env runner sampled
    module = load_module(trial / "checkpoint_000001")
    assert module.policy.config.memory == kind and module.model_config["max_seq_len"] == ENV["max_cycles"]
    trainer = _trainer(seed=5, kind=kind)
    initial = _params(trainer.policy)
    trainer.policy.load_state_dict(module.policy.state_dict())
    assert not all(torch.equal(a, b) for a, b in zip(initial, _params(trainer.policy)))
    _assert_module_matches_fast_rollout(trainer, module)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fast_tune_trainable_runs_the_recurrent_policy_and_its_checkpoint_resumes_exactly(ray_session, tmp_path, kind):
    """``path: fast`` with ``policy.memory=gru`` (or ``gru_neuron``): the Tune function trainable trains the recurrent
    policy (features calibrated through a stateful episode) and its checkpoint restores the states."""
    from marl_net.commands.tune import run_launch
    from marl_net.experiment import load_launch
    from marl_net.fast.tune_trainable import trainer_from_launch

    launch = load_launch("experiments/configs/fast_quick.yaml", [
        f"run.storage_path={tmp_path}", f"policy.memory={kind}", "policy.memory_size=4", "policy.hidden=8",
        f"env.layers={list(ENV['layers'])}", "env.max_cycles=6", "ppo.copies=4", "ppo.rollout_steps=4"])
    (result,) = list(run_launch(launch))
    assert result.metrics["training_iteration"] == 2 and result.checkpoint is not None
    expected = trainer_from_launch(launch)
    scale = expected.policy.feature_scale
    assert expected.policy.config.memory == kind and expected.policy.recurrent and not torch.equal(scale, torch.ones_like(scale))
    for _ in range(2):
        expected.train()
    restored = trainer_from_launch(launch)
    with result.checkpoint.as_directory() as directory:
        restored.restore(directory)
    assert all(torch.equal(x, y) for x, y in zip(_params(expected.policy), _params(restored.policy)))
    assert all(torch.equal(x, y) for x, y in zip(expected.recurrent.state, restored.recurrent.state))
    assert any(bool(s.abs().sum() > 0) for s in restored.recurrent.state)  # saved mid-episode


def test_the_recurrent_rule_uses_its_memory_where_the_right_change_depends_on_the_past():
    """What it proves: on a task where the direction of the right weight change is not in the
    current observation but follows from the past (``experiments/memory_check.py``: the rule sees
    the weight, the loss and the loss change, not which way the weight last moved; the teacher's
    side is random per episode), each recurrent rule (``gru``: a state per synapse row;
    ``gru_neuron``: a state per neuron) meta-trained briefly ends held-out inner episodes at a lower
    loss than the feed-forward rule trained alike (same PPO settings, seed and budget): less than
    0.8x its final loss (measured 0.54x and 0.56x at seed 0). A recurrent policy that ignored its
    state, or a state wiped every step, would be a feed-forward rule and could not."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "memory_check.py"
    spec = importlib.util.spec_from_file_location("memory_check", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    assert check.main([]) == 0


def test_marl_net_run_takes_either_memory_and_refuses_an_unknown_one_naming_both(capsys, tmp_path):
    """``marl-net run --set policy.memory=...``: an unknown memory is one line on stderr naming the
    choices (exit 2, before any training); both memories pass the job's setting checks on every
    level, and a saved per-neuron rule loads back as what it was (``policy_from_state``)."""
    from marl_net import cli
    from marl_net.meta_training import LEVELS, check_settings, job_settings, policy_from_state

    assert cli.main(["run", "--set", "policy.memory=lstm", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'gru'" in err and "'gru_neuron'" in err
    for memory in ("gru", "gru_neuron"):
        check_settings(list(LEVELS), {"policy": {"memory": memory}})
        assert job_settings("feedback", {"policy": {"memory": memory}})["policy"]["memory"] == memory
    policy = make_policy(PolicyConfig(num_features=4, hidden=8, memory="gru_neuron", memory_size=4))
    loaded = policy_from_state(policy.config.to_dict(), policy.state_dict())
    assert type(loaded) is NeuronMemoryPolicy
    assert all(torch.equal(a, b) for a, b in zip(_params(policy), _params(loaded)))
