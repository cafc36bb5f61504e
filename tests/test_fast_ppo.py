"""Vectorized PPO: it learns on a tiny setup, is deterministic, resumes exactly, logs CleanRL's tags,
and trains the same module the RLlib path wraps."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.fast.ppo import FastPPO, FastPPOConfig, minibatch_picks
from marl_net.fast.rollout import gae
from marl_net.seeding import seed_from
from marl_net.policies.synapse_policy import masked_entropy, masked_log_prob

TINY_ENV = dict(layers=(4, 6, 2), max_cycles=5, batch_size=8)
TINY_PPO = dict(copies=3, rollout_steps=3, minibatch_size=16, num_epochs=2)  # 3 does not divide 5: mid-episode cuts
TIMING_KEYS = {"agent_steps_per_s", "iteration_time_s", "collect_time_s", "learn_time_s"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small batches on a shared 2-core machine run fastest (and steadiest) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _same_metrics(a: dict, b: dict) -> bool:
    def clean(m):
        out = {k: v for k, v in m.items() if k not in TIMING_KEYS}
        return {k: (clean(v) if isinstance(v, dict) else "nan" if isinstance(v, float) and math.isnan(v) else v)
                for k, v in out.items()}

    return clean(a) == clean(b)


def _same_params(p: torch.nn.Module, q: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(p.state_dict().values(), q.state_dict().values()))


def test_ppo_lowers_the_inner_loss_on_a_tiny_setup():
    # Difference rewards pay each neuron for its own contribution; with the (privileged) gradient
    # observed, a rule that follows it is learnable within a few iterations.
    env = EnvConfig(layers=(4, 8, 2), max_cycles=10, reward="difference", observations=("weight", "gradient"),
                    action_scale=0.1)
    trainer = FastPPO(env, {"hidden": 16, "depth": 1}, FastPPOConfig(copies=32, minibatch_size=512, lr=3e-3), seed=0)
    first = trainer.train()
    for _ in range(14):
        last = trainer.train()
    assert last["inner_loss_final"] < 0.6 * first["inner_loss_final"], (first, last)
    assert last["episode_return_mean"] > first["episode_return_mean"]
    assert all(math.isfinite(last[k]) for k in ("policy_loss", "value_loss", "approx_kl", "clipfrac", "explained_variance"))


def test_same_seed_same_result_and_different_seed_differs():
    runs = []
    for seed in (1, 1, 2):
        trainer = FastPPO(TINY_ENV, {"hidden": 8}, FastPPOConfig(**TINY_PPO), seed=seed)
        metrics = [trainer.train() for _ in range(2)]
        runs.append((trainer, metrics))
    (a, ma), (b, mb), (c, mc) = runs
    assert _same_params(a.policy, b.policy) and all(_same_metrics(x, y) for x, y in zip(ma, mb))
    assert not _same_params(a.policy, c.policy)


def test_annealed_learning_rate_falls_linearly_over_the_given_iterations():
    config = FastPPOConfig(**TINY_PPO, lr=1e-3, lr_anneal_iterations=4)
    trainer = FastPPO(TINY_ENV, {"hidden": 8}, config, seed=0)
    used = [trainer.train()["learning_rate"] for _ in range(5)]
    assert used == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3, 0.0])
    assert FastPPOConfig(lr=1e-3).lr_at(10**6) == 1e-3  # no annealing: constant
    with pytest.raises(ValueError, match="lr_anneal_iterations"):
        FastPPOConfig(lr_anneal_iterations=0)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    annealed = FastPPOConfig(**TINY_PPO, lr_anneal_iterations=6)  # the schedule resumes too
    uninterrupted = FastPPO(TINY_ENV, {"hidden": 8}, annealed, seed=5)
    expected = [uninterrupted.train() for _ in range(4)]

    first_half = FastPPO(TINY_ENV, {"hidden": 8}, annealed, seed=5)
    for _ in range(2):
        first_half.train()
    first_half.save(str(tmp_path))
    del first_half
    resumed = FastPPO(TINY_ENV, {"hidden": 8}, annealed, seed=999)  # seed comes from the checkpoint
    resumed.restore(str(tmp_path))
    got = [resumed.train() for _ in range(2)]

    assert all(_same_metrics(x, y) for x, y in zip(expected[2:], got))
    assert _same_params(uninterrupted.policy, resumed.policy)
    for x, y in zip(uninterrupted.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert all(torch.equal(x, y) for x, y in zip(uninterrupted.obs, resumed.obs))
    assert torch.equal(uninterrupted.env.core.params[0], resumed.env.core.params[0])
    older = {k: v for k, v in resumed.env.state_dict().items() if k != "batch_index"}  # saved before the table
    with pytest.raises(ValueError, match="earlier marl_net"):
        resumed.env.load_state_dict(older)


def test_gae_bootstraps_truncation_and_not_termination():
    rewards = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    values = torch.zeros(2, 2)
    ends = torch.tensor([[True, True], [False, False]])
    end_values = torch.tensor([[10.0, 0.0], [0.0, 0.0]])  # row 0 truncated (V(final)=10), row 1 terminated
    adv, ret = gae(rewards, values, ends, end_values, next_value=torch.tensor([5.0, 5.0]), gamma=0.5, lam=1.0)
    assert adv[0].tolist() == [1.0 + 0.5 * 10.0, 1.0]  # the end cuts the trace: step 1 does not leak back
    assert adv[1].tolist() == [1.0 + 0.5 * 5.0, 1.0 + 0.5 * 5.0]
    assert torch.equal(ret, adv + values)


@pytest.mark.parametrize("size,batches", [(7, 1), (7, 3), (3, 4), (1001, 4), (40960, 4), (5000, 300)])
def test_minibatches_are_the_permutations_slices_in_storage_order(size, batches):
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(size + batches))
    picks = minibatch_picks(perm, batches)
    assert len(picks) == batches
    for j, pick in enumerate(picks):  # 300 minibatches: int32 labels; 3 samples in 4: an empty one
        assert torch.equal(pick, perm[j * size // batches : (j + 1) * size // batches].sort().values)


def test_config_refuses_misspellings_and_ignores_rllib_settings():
    with pytest.raises(ValueError, match="minibatch_size"):
        FastPPOConfig.from_kwargs(minibatch_sise=64)
    cfg = FastPPOConfig.from_kwargs(lr=1e-3, num_env_runners=2, num_cpus_per_env_runner=1, train_batch_size=500)
    assert cfg.lr == 1e-3 and cfg.train_batch_size == 500
    with pytest.raises(ValueError, match="must be in"):
        FastPPOConfig(gamma=1.5)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cpu'"):
            FastPPOConfig(device="cuda")


def test_tensorboard_has_cleanrl_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = FastPPO(TINY_ENV, {"hidden": 8}, FastPPOConfig(**TINY_PPO), seed=0, log_dir=str(tmp_path))
    for _ in range(2):
        trainer.train()
    trainer.writer.close()
    tags = set(EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"])
    expected = {"charts/SPS", "charts/learning_rate", "charts/episodic_return", "charts/inner_loss",
                "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl",
                "losses/old_approx_kl", "losses/clipfrac", "losses/explained_variance"}
    assert expected <= tags


def test_policy_trained_on_fast_path_gives_same_action_means_in_rllib_module():
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from marl_net.envs import network_weights_v0
    from marl_net.policies.rllib_module import SynapseRLModule

    policy_kwargs = {"hidden": 8, "depth": 2}
    trainer = FastPPO(TINY_ENV, policy_kwargs, FastPPOConfig(**TINY_PPO), seed=0)
    for _ in range(2):
        trainer.train()
    pz = network_weights_v0.parallel_env(**TINY_ENV)
    agent = pz.possible_agents[0]
    module = RLModuleSpec(module_class=SynapseRLModule, observation_space=pz.observation_space(agent),
                          action_space=pz.action_space(agent), model_config=policy_kwargs).build()
    module.policy.load_state_dict(trainer.policy.state_dict())
    padded = trainer.env.to_padded(trainer.obs)  # the fast path's blocks as the PettingZoo layout
    obs = padded.flatten(1)  # [E * A, K * (F + 1)]
    k = pz.action_space(agent).shape[0]
    with torch.no_grad():
        fast_mean, fast_log_std, fast_value = trainer.policy(padded)
        rllib_inputs = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(rllib_inputs[:, :k], fast_mean)
    torch.testing.assert_close(module.compute_values({Columns.OBS: obs}), fast_value)
    assert not torch.allclose(fast_mean, torch.zeros_like(fast_mean))  # a real, trained output

    # the same action distribution: log-probs and entropies over the real synapses only, on both paths
    mask = padded[..., -1]
    assert bool((mask == 0).any())  # the tiny network has padding slots
    dist = module.get_train_action_dist_cls().from_logits(rllib_inputs)
    actions = torch.randn_like(fast_mean)
    fast_logp = masked_log_prob(actions, fast_mean, fast_log_std, mask)
    torch.testing.assert_close(dist.logp(actions), fast_logp)
    torch.testing.assert_close(dist.logp(actions + 5.0 * (1 - mask)), fast_logp)  # padding actions do not count
    torch.testing.assert_close(dist.entropy(), masked_entropy(fast_log_std, mask))
    torch.testing.assert_close(dist.kl(dist), torch.zeros(len(obs)))
    sample, logp = dist.sample_and_logp()
    torch.testing.assert_close(logp, masked_log_prob(sample, fast_mean, fast_log_std, mask))


@pytest.mark.parametrize("ownership", ["outgoing", "incoming"])
def test_trimming_padding_per_block_matches_the_padded_policy(ownership):
    trainer = FastPPO({**TINY_ENV, "layers": (3, 7, 2), "ownership": ownership}, {"hidden": 8},
                      FastPPOConfig(**TINY_PPO), seed=0)
    with torch.no_grad():
        outs = trainer.policy.forward_blocks(trainer.obs)  # as the fast path runs it
        mean, log_std = (trainer.env.to_padded([o[i] for o in outs]) for i in (0, 1))
        value = trainer._values(trainer.obs)
        ref_mean, ref_log_std, ref_value = trainer.policy(trainer.env.to_padded(trainer.obs))  # on the padded table
    mask = trainer.env.mask
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(log_std[mask], ref_log_std[mask])
    torch.testing.assert_close(value, ref_value)


def test_restores_survive_injected_crashes_instead_of_replaying_them(tmp_path):
    from marl_net.core import EnvCrash

    env = {**TINY_ENV, "crash_probability": 0.05}
    make = lambda: FastPPO(env, {"hidden": 8}, FastPPOConfig(**TINY_PPO), seed=0)  # noqa: E731
    trainer, crashes = make(), 0
    trainer.save(str(tmp_path))
    while trainer.iteration < 15:
        try:
            trainer.train()
            trainer.save(str(tmp_path))
        except EnvCrash:
            crashes += 1
            assert crashes < 100, "restores keep replaying the same crash"
            trainer = make()
            trainer.restore(str(tmp_path))
    assert crashes > 0  # the injection did fire, and training got past every crash


def _assert_same_state(a, b, where="state"):
    """Every tensor, number and RNG state in two nested state dicts is equal (NaN equal to NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{tuple(a.shape)} != {b.dtype}{tuple(b.shape)}"
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                     and torch.equal(a.nan_to_num(), b.nan_to_num())), f"{where} differs"
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), f"{where}: nan != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_resume_on_the_fused_kernel_path_with_the_shipped_policy(tmp_path):
    """The path every shipped config uses: the main job's env and policy (hidden 32, depth 2), which
    the fused CPU kernel runs. The restored trainer's whole state (every parameter and buffer,
    the optimizer's moments and step counts, the action, shuffle and per-copy env generators, the
    networks in flight) equals the uninterrupted run's, and training on continues identically."""
    import copy

    from marl_net.meta_training import job_settings
    from marl_net.policies import fused_actor_critic, fused_layer

    if fused_layer.library() is None:
        pytest.skip("the fused kernel cannot be built here (no C++ compiler, or MARL_NET_FUSED=0)")
    shipped = job_settings("perturbation")  # the main job's perturbation level
    env = {**shipped["env"], "max_cycles": 5}
    policy = dict(shipped["policy"])
    assert (policy["hidden"], policy["depth"]) == (32, 2)
    config = FastPPOConfig(copies=4, rollout_steps=3, minibatch_size=64, num_epochs=2, lr=1e-3, lr_anneal_iterations=8)
    uninterrupted = FastPPO(env, policy, config, seed=3)
    assert fused_actor_critic.applies(uninterrupted.policy, uninterrupted.obs[0])  # the fused path, not torch
    for _ in range(2):
        uninterrupted.train()
    at_save = copy.deepcopy(uninterrupted.state_dict())
    expected = [uninterrupted.train() for _ in range(2)]

    first_half = FastPPO(env, policy, config, seed=3)
    for _ in range(2):
        first_half.train()
    first_half.save(str(tmp_path))
    del first_half
    resumed = FastPPO(env, policy, config, seed=77)  # everything comes from the checkpoint
    resumed.restore(str(tmp_path))
    restored = resumed.state_dict()
    assert restored["optimizer"]["state"] and len(restored["env"]["data_gens"]) == 4  # the compared parts exist
    _assert_same_state(at_save, restored)
    got = [resumed.train() for _ in range(2)]
    assert all(_same_metrics(x, y) for x, y in zip(expected, got))
    _assert_same_state(uninterrupted.state_dict(), resumed.state_dict())


def test_restore_refuses_another_configuration_naming_the_keys(tmp_path):
    FastPPO(TINY_ENV, {"hidden": 8}, FastPPOConfig(**TINY_PPO), seed=0).save(str(tmp_path))
    other = FastPPO({**TINY_ENV, "max_cycles": 6}, {"hidden": 8, "depth": 1},
                    FastPPOConfig(**{**TINY_PPO, "num_epochs": 3}), seed=0)
    with pytest.raises(ValueError, match=r"different configuration, saved -> here: env \(max_cycles: 5 -> 6\), "
                                         r"policy \(depth: 2 -> 1\), ppo \(num_epochs: 2 -> 3\)"):
        other.restore(str(tmp_path))
    # how a run computes (device, threads, collection chunks) may change on resume
    FastPPO(TINY_ENV, {"hidden": 8}, FastPPOConfig(**TINY_PPO, torch_threads=1, collect_chunk=5), seed=0).restore(
        str(tmp_path))
    state = torch.load(tmp_path / FastPPO.CHECKPOINT_FILE, weights_only=False)
    del state["env_config"]
    with pytest.raises(ValueError, match="earlier marl_net, without its env config"):
        other.load_state_dict(state)


def test_block_noise_draws_only_real_synapses_and_padded_noise_is_the_default():
    ppo = FastPPOConfig(**TINY_PPO)
    assert ppo.action_noise == "padded"
    padded = FastPPO(TINY_ENV, {"hidden": 8}, ppo, seed=0)
    blocks = FastPPO(TINY_ENV, {"hidden": 8}, dataclasses.replace(ppo, action_noise="blocks"), seed=0)
    draws = blocks._noise()
    assert [tuple(d.shape) for d in draws] == [tuple(a.shape[1:]) for a in blocks.buffer.actions]
    blocks.action_gen.manual_seed(seed_from(0, 4))  # back to the trainer's stream before training
    padded.train(), blocks.train()
    for a, b in zip(padded.buffer.actions, blocks.buffer.actions):
        assert a.shape == b.shape and torch.isfinite(b).all() and not torch.equal(a, b)  # other draws
    with pytest.raises(ValueError, match="action_noise='rows' is unknown"):
        FastPPOConfig(action_noise="rows")
