"""Fast PPO on several processes (``FastPPOConfig.workers``, marl_net.fast.data_parallel): the ranks'
shares of a minibatch make the update one process makes on the whole of it; a two-worker run is
deterministic, resumes exactly from a checkpoint, learns, and bad settings are refused."""

from __future__ import annotations

import threading

import pytest
import torch

from marl_net.fast import data_parallel
from marl_net.fast.ppo import FastPPO, FastPPOConfig
from marl_net.fast.rollout import gae

ENV = dict(layers=(4, 6, 2), max_cycles=5, batch_size=8)
PPO = dict(copies=4, rollout_steps=5, minibatch_size=40, num_epochs=2, lr=3e-3)


class ThreadComm(data_parallel.Solo):
    """Two ranks as two threads of this process: the sum of an all-reduce taken in rank order."""

    def __init__(self, rank: int, shared: dict):
        self.rank, self.world, self.shared = rank, 2, shared

    def all_reduce_(self, tensor):
        slots, barrier = self.shared["slots"], self.shared["barrier"]
        slots[self.rank] = tensor.clone()
        barrier.wait()
        total = slots[0] + slots[1]
        barrier.wait()
        return tensor.copy_(total)


def _halves(full: FastPPO, shard: FastPPO, rank: int) -> None:
    """``shard``'s rollout buffer := copies ``[rank * E/2, (rank + 1) * E/2)`` of ``full``'s."""
    half = full.env.copies // 2
    for mine, whole in zip(shard.buffer.obs + shard.buffer.actions, full.buffer.obs + full.buffer.actions):
        rows = whole.shape[1] // 2
        mine.copy_(whole[:, rank * rows : (rank + 1) * rows])
    agents = full.env.num_agents
    for name in ("logp", "values", "rewards", "ends", "end_values"):
        whole = getattr(full.buffer, name).view(full.steps, full.env.copies, agents)
        getattr(shard.buffer, name).copy_(whole[:, rank * half : (rank + 1) * half].reshape(full.steps, -1))


@pytest.mark.parametrize("kernels", [True, False])
def test_two_ranks_shares_make_the_one_process_update(kernels):
    """One process learns from a rollout of 4 copies; two ranks (threads, each a trainer of 2 copies)
    learn from its halves: the summed gradients of their shares, with the advantages normalized
    over the whole minibatch, make the same parameters, to float rounding (sums in another order)."""
    from marl_net import numerics

    config = dict(PPO, num_epochs=1, minibatch_size=10_000)  # one minibatch: the same samples on both sides
    with numerics.kernels(kernels):
        full = FastPPO(ENV, {"hidden": 16}, FastPPOConfig(**config), seed=1)
        with torch.no_grad():
            next_value, _ = full._collect()
        buf = full.buffer
        adv, returns = gae(buf.rewards, buf.values, buf.ends, buf.end_values, next_value, 0.99, 0.95)
        shared = {"slots": [None, None], "barrier": threading.Barrier(2)}
        shards = [FastPPO(ENV, {"hidden": 16}, FastPPOConfig(**config, workers=2), seed=1,
                          _shard=(rank, ThreadComm(rank, shared))) for rank in range(2)]
        for rank, shard in enumerate(shards):
            _halves(full, shard, rank)
            shard.policy.load_state_dict(full.policy.state_dict())
        cut = lambda x, r: x.view(full.steps, 2, -1)[:, r].reshape(full.steps, -1)  # noqa: E731
        stats = [None, None]

        def learn(rank):
            stats[rank] = shards[rank]._learn(cut(adv, rank), cut(returns, rank))

        threads = [threading.Thread(target=learn, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = full._learn(adv, returns)
    for (name, want), got0, got1 in zip(full.policy.named_parameters(), shards[0].policy.parameters(),
                                        shards[1].policy.parameters()):
        assert torch.equal(got0, got1), name  # the ranks hold one policy
        torch.testing.assert_close(got0, want, rtol=1e-5, atol=1e-6, msg=name)
    before = FastPPO(ENV, {"hidden": 16}, FastPPOConfig(**config), seed=1).policy
    assert any(not torch.allclose(p, q) for p, q in zip(before.parameters(), full.policy.parameters()))  # it learned
    for key in ("policy_loss", "value_loss", "entropy", "clipfrac", "explained_variance"):
        assert stats[0][key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
        assert stats[0][key] == stats[1][key], key


def _run(iterations: int, seed: int = 0, **ppo):
    trainer = FastPPO(ENV, {"hidden": 16}, FastPPOConfig(**{**PPO, "workers": 2, **ppo}), seed=seed)
    try:
        metrics = [trainer.train() for _ in range(iterations)]
        return metrics, {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    finally:
        trainer.close()


def _same(a: dict, b: dict) -> bool:
    skip = {"agent_steps_per_s", "iteration_time_s", "collect_time_s", "learn_time_s"}
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def test_two_workers_same_seed_same_run_and_every_rank_counted():
    first, params = _run(2)
    again, params_again = _run(2)
    assert all(_same(x, y) for x, y in zip(first, again))
    assert all(torch.equal(params[k], params_again[k]) for k in params)
    # both ranks' samples and episodes: 4 copies x 10 agents (4 + 6 neurons own outgoing weights) x 5 steps,
    # twice; 4 episodes per iteration
    assert first[-1]["num_agent_steps_sampled_lifetime"] == 2 * 4 * 10 * 5
    assert [m["episodes_this_iter"] for m in first] == [4, 4]
    other, _ = _run(2, seed=1)
    assert not _same(first[-1], other[-1])


def test_two_workers_resume_exactly(tmp_path):
    uninterrupted = FastPPO(ENV, {"hidden": 16}, FastPPOConfig(**{**PPO, "rollout_steps": 3}, workers=2), seed=2)
    try:
        uninterrupted.train()
        uninterrupted.save(str(tmp_path))
        expected = [uninterrupted.train() for _ in range(2)]
        want = {k: v.clone() for k, v in uninterrupted.policy.state_dict().items()}
    finally:
        uninterrupted.close()
    resumed = FastPPO(ENV, {"hidden": 16}, FastPPOConfig(**{**PPO, "rollout_steps": 3}, workers=2), seed=9)
    try:
        resumed.restore(str(tmp_path))  # rank 1's envs, observations and streams come back too
        got = [resumed.train() for _ in range(2)]
        assert all(_same(x, y) for x, y in zip(expected, got))
        assert all(torch.equal(want[k], v) for k, v in resumed.policy.state_dict().items())
    finally:
        resumed.close()
    one = FastPPO(ENV, {"hidden": 16}, FastPPOConfig(**{**PPO, "rollout_steps": 3}), seed=2)
    with pytest.raises(ValueError, match=r"ppo \(workers: 2 -> 1\)"):
        one.restore(str(tmp_path))


def test_two_workers_learn():
    env = dict(layers=(4, 8, 2), max_cycles=10, reward="difference", observations=("weight", "gradient"),
               action_scale=0.1)
    trainer = FastPPO(env, {"hidden": 16, "depth": 1}, FastPPOConfig(copies=32, minibatch_size=512, lr=3e-3, workers=2),
                      seed=0)
    try:
        first = trainer.train()
        for _ in range(14):
            last = trainer.train()
    finally:
        trainer.close()
    assert last["inner_loss_final"] < 0.6 * first["inner_loss_final"], (first, last)


def test_bad_worker_settings_are_refused():
    with pytest.raises(ValueError, match="copies=3 must be a multiple of workers=2"):
        FastPPOConfig(copies=3, workers=2)
    with pytest.raises(ValueError, match="workers=0 must be positive"):
        FastPPOConfig(workers=0)
    with pytest.raises(ValueError, match="recurrent policy .* set ppo workers=1"):
        FastPPO(ENV, {"hidden": 8, "memory": "gru"}, FastPPOConfig(**PPO, workers=2))


def test_a_worker_that_fails_is_an_error_not_a_wait():
    """Workers import marl_net afresh: a reward scheme this process registered at run time is
    unknown to them, and the trainer raises the worker's error (docs/fast_path.md says so)."""
    from marl_net.rewards import REWARDS, register_reward

    register_reward("only_in_this_process", "a scheme the workers do not know")(
        lambda ctx: -ctx.loss[:, None].expand(-1, ctx.ownership.num_agents))
    try:
        with pytest.raises(RuntimeError, match=r"(?s)worker 1 failed.*reward='only_in_this_process' is unknown"):
            FastPPO({**ENV, "reward": "only_in_this_process"}, {"hidden": 8}, FastPPOConfig(**PPO, workers=2))
    finally:
        REWARDS.pop("only_in_this_process")


def test_a_silent_peer_is_an_error_after_the_timeout_and_a_closed_one_at_once():
    """Rank 0 of a real :class:`Link` over a local connection whose worker end sends nothing: the
    sum raises after ``timeout_s`` naming the silent rank; once that end is closed, at once."""
    import multiprocessing.connection
    import socket
    import time

    ours, theirs = socket.socketpair()
    link = data_parallel.Link(0, 2, [multiprocessing.connection.Connection(ours.detach())], timeout_s=0.2)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="rank 1 sent nothing for 0.2 s"):
        link.all_reduce_(torch.ones(3))
    assert 0.2 <= time.perf_counter() - start < 5
    theirs.close()
    with pytest.raises(EOFError):
        link.gather_objects("x")
