"""Vectorized PPO over (copies x agents): the fast path.

Every neuron of every network copy is one row of the batch (``N = copies * agents``), so one call
of the shared :class:`~marl_net.policies.synapse_policy.SynapsePolicy` acts for all of them and
nothing loops over agents. The algorithm is CleanRL's ppo.py (continuous actions), read top to
bottom in :meth:`FastPPO.train`: collect ``rollout_steps`` steps of every copy, per-agent GAE
(the agents of a copy share the episode end), then ``num_epochs`` epochs of minibatch updates of
the clipped surrogate plus value loss minus entropy bonus, with advantage normalization and
gradient clipping. The env runs in the block layout (``VectorNetworkEnv(..., layout="blocks")``):
observations, actions, the rollout's storage and the learner's minibatches are per ownership block,
with no padding to the largest fan, so the work follows the synapses that exist. Log-probabilities
and entropies cover the real synapses only. Episodes truncated at ``max_cycles`` bootstrap from
the value of their last observation; diverged episodes (terminated) do not.

Usage::

    from marl_net.config import EnvConfig
    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    trainer = FastPPO(EnvConfig(layers=(8, 16, 4), max_cycles=20), {"hidden": 64},
                      FastPPOConfig(copies=16), seed=0, log_dir="runs/fast")
    for _ in range(10):
        metrics = trainer.train()          # one iteration; see FastPPO.train for the keys
    trainer.save("ckpt/")                  # policy, optimizer, env, RNG states, counters, numerics

The launch script ``experiments/fast_ppo.py`` and the Tune trainable
``marl_net.fast.tune_trainable.train_fast`` drive this class. TensorBoard tags follow CleanRL:
``charts/{learning_rate, episodic_return, episodic_length, SPS, inner_loss}`` and
``losses/{value_loss, policy_loss, entropy, old_approx_kl, approx_kl, clipfrac,
explained_variance}``; the step axis is agent-steps.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from marl_net import numerics
from marl_net.config import EnvConfig
from marl_net.fast import data_parallel
from marl_net.fast.recurrent_ppo import RecurrentPPO
from marl_net.fast.rollout import Rollout, gae, minibatch_picks
from marl_net.fast.vector_env import VectorNetworkEnv
from marl_net.launch_keys import RLLIB_PPO_SETTINGS
from marl_net.policies import fused_actor_critic
from marl_net.policies.recurrent_policy import make_policy
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy, check_policy_settings, masked_log_prob
from marl_net.seeding import seed_from
from marl_net.validation import check_field_types, config_differences

@dataclass(frozen=True)
class FastPPOConfig:
    """Hyperparameters of the fast path (RLlib's names where the two paths share a meaning)."""

    lr: float = 3.0e-4
    lr_anneal_iterations: int | None = None  # decay lr linearly to 0 over this many iterations (CleanRL's anneal_lr)
    gamma: float = 0.99
    lambda_: float = 0.95
    clip_param: float = 0.2
    vf_loss_coeff: float = 0.5
    entropy_coeff: float = 0.0
    num_epochs: int = 4
    minibatch_size: int = 256  # agent-steps per minibatch
    grad_clip: float | None = 0.5  # max global gradient norm (None: no clipping)
    normalize_advantages: bool = True
    copies: int = 16  # network copies stepped together (E)
    rollout_steps: int | None = None  # steps per copy per iteration; None: the env's max_cycles
    train_batch_size: int | None = None  # agent-steps per iteration; sets rollout_steps when given
    device: str = "cpu"  # torch device of the policy and the network core ("cuda" on a GPU machine)
    torch_threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    # threads of the fused CPU kernel's acting and minibatches (None: every core); results do not
    # depend on it (agents split when acting; a minibatch's chunk gradients summed in chunk order)
    kernel_threads: int | None = None
    collect_chunk: int = 0  # rows per torch-path policy forward while collecting (0: all at once); bounds memory
    # (the fused CPU kernel keeps nothing per hidden unit and always takes all rows)
    # The Gaussian draws of collection: "padded" cuts them from one draw per step over every agent's
    # padded slots [E * A, K] (the draws of earlier versions: seeded runs repeat bit for bit);
    # "blocks" draws only the real synapses' (other numbers; what networks with very different fans
    # want: on 10-1000-10 outgoing the padded draw is 50x the synapses).
    action_noise: str = "padded"
    # processes that split the copies (rank 0 is this one; marl_net.fast.data_parallel): each
    # collects copies / workers copies and takes its share of every minibatch, gradients summed
    # over them. Other numbers than one worker's (per-worker noise), same seed same run for one value.
    workers: int = 1

    def __post_init__(self):
        check_field_types(self)  # numbers are numbers (not strings), integers integers, flags booleans
        positive = ("lr", "num_epochs", "minibatch_size", "copies", "workers")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive")
        for name in ("gamma", "lambda_"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be in [0, 1]")
        if not self.clip_param > 0:
            raise ValueError(f"clip_param={self.clip_param!r} must be positive")
        for name in ("rollout_steps", "train_batch_size", "torch_threads", "kernel_threads", "grad_clip",
                     "lr_anneal_iterations"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value!r} must be positive or None")
        if self.action_noise not in ("padded", "blocks"):
            raise ValueError(f"action_noise={self.action_noise!r} is unknown; choose 'padded' or 'blocks'")
        if self.collect_chunk < 0:
            raise ValueError(f"collect_chunk={self.collect_chunk!r} must be >= 0 (0: no chunking)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but torch sees no CUDA GPU here: pass device='cpu'")
        torch.device(self.device)  # raises on a malformed device string
        if self.copies % self.workers:
            raise ValueError(f"copies={self.copies} must be a multiple of workers={self.workers}: each worker "
                             "steps the same number of network copies")
        if self.workers > 1 and self.device != "cpu":
            raise ValueError(f"workers={self.workers} splits the copies over CPU processes; on device="
                             f"{self.device!r} use workers=1")

    @classmethod
    def from_kwargs(cls, **kwargs) -> "FastPPOConfig":
        """Build from a launch dict's ``ppo:`` section: RLlib-only keys are ignored, misspelled
        ones refused with the closest valid name."""
        names = [f.name for f in dataclasses.fields(cls)]
        if "train_batch_size_per_learner" in kwargs:  # one learner: the same thing
            kwargs.setdefault("train_batch_size", kwargs.pop("train_batch_size_per_learner"))
        for key in list(kwargs):
            if key not in names and key in RLLIB_PPO_SETTINGS:
                kwargs.pop(key)  # meant for the RLlib path
            elif key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {names}"
                raise ValueError(f"unknown ppo key {key!r}{hint}")
        return cls(**kwargs)

    def lr_at(self, iteration: int) -> float:
        """The learning rate of (0-based) ``iteration``: ``lr``, or with ``lr_anneal_iterations = N``
        ``lr * (1 - iteration / N)`` as CleanRL anneals it (the last of N iterations at ``lr / N``;
        0 after)."""
        if self.lr_anneal_iterations is None:
            return self.lr
        return self.lr * max(0.0, 1.0 - iteration / self.lr_anneal_iterations)

    def steps_per_iteration(self, rows: int, max_cycles: int) -> int:
        if self.train_batch_size is not None:
            return max(1, math.ceil(self.train_batch_size / rows))
        return self.rollout_steps or max_cycles


def build_policy(env: VectorNetworkEnv, policy_kwargs: Mapping[str, Any], seed: int) -> SynapsePolicy:
    """The shared policy for ``env``'s observations, initialized from ``seed`` alone: feed-forward,
    or recurrent with ``memory="gru"`` (``make_policy``)."""
    kwargs = dict(policy_kwargs)
    if kwargs.pop("num_features", env.num_features) != env.num_features:
        raise ValueError(f"policy num_features must match the env's {env.num_features}; leave it out")
    check_policy_settings(kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_from(seed, 3))
        return make_policy(PolicyConfig(num_features=env.num_features, **kwargs))


class FastPPO:
    """PPO on a :class:`VectorNetworkEnv`; one :meth:`train` call is one iteration."""

    def __init__(
        self,
        env_config: EnvConfig | Mapping[str, Any],
        policy_kwargs: Mapping[str, Any] | None = None,
        config: FastPPOConfig | None = None,
        seed: int = 0,
        log_dir: str | None = None,
        # (rank, its collectives: a data_parallel.Link): one rank's trainer of workers > 1, built by
        # data_parallel's worker processes (None: the trainer a user holds, rank 0)
        _shard: tuple[int, data_parallel.Solo] | None = None,
    ):
        self.config = config = config or FastPPOConfig()
        # threads per process: as configured, else the machine's cores shared among the workers
        cores_each = max(1, (os.cpu_count() or 1) // config.workers)
        self.torch_threads = config.torch_threads or (cores_each if config.workers > 1 else None)
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        self.kernel_threads = config.kernel_threads or cores_each
        self.device = torch.device(config.device)
        self.seed = int(seed)
        # One process (workers=1), or rank `rank` of `workers` each stepping copies / workers copies
        # (marl_net.fast.data_parallel); rank 0 is the trainer the user holds and starts the others.
        self.rank, self.world = (_shard[0] if _shard else 0), config.workers
        copies = config.copies // self.world
        self.env = VectorNetworkEnv(env_config, copies=copies, device=self.device, layout="blocks")
        self.policy = build_policy(self.env, policy_kwargs or {}, self.seed).to(self.device)
        if self.world > 1 and self.policy.recurrent:
            raise ValueError(f"a recurrent policy (memory={self.policy.config.memory!r}) trains in one process: "
                             "set ppo workers=1")
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr, eps=1e-5, fused=True)
        self.steps = config.steps_per_iteration(self.env.num_rows * self.world, self.env.config.max_cycles)
        rank_keys = (self.rank,) if self.world > 1 else ()
        self.action_gen = torch.Generator(self.device).manual_seed(seed_from(self.seed, 4, *rank_keys))
        self.shuffle_gen = torch.Generator("cpu").manual_seed(seed_from(self.seed, 5, *rank_keys))
        self.buffer = Rollout.allocate(self.steps, self.env.copies, self.env.blocks, self.env.num_features, self.device)
        self.obs, _ = self.env.reset(seed=self.seed + self.rank * copies)
        self.iteration = 0
        self.agent_steps = 0
        self.running_return = torch.zeros(self.env.num_rows, device=self.device)
        self.running_length = torch.zeros(self.env.copies, dtype=torch.long, device=self.device)
        # per copy-episode: (return per agent, length, final inner loss, initial inner loss, diverged)
        self.episodes = collections.deque(maxlen=100)
        self.fresh_episodes: list[tuple] = []  # this iteration's, this rank's (gathered on rank 0)
        self.kernels_ran: set[str] = set()  # the C++ kernels this trainer's iterations ran (marl_net.numerics)
        # The recurrent policy (memory="gru") collects and learns through RecurrentPPO (states
        # carried, whole agent sequences in the learner; torch only, never the fused kernel).
        self.recurrent = RecurrentPPO(self) if self.policy.recurrent else None
        self.pool = None
        if _shard is not None:
            self.comm = _shard[1]
        elif self.world > 1:
            self.pool = data_parallel.WorkerPool(self.world, self.env.config.to_dict(), policy_kwargs or {},
                                                 dataclasses.asdict(config), self.seed)
            self.comm = self.pool.comm
        else:
            self.comm = data_parallel.Solo()
        self.writer = None
        if log_dir is not None and self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir)

    # ---------------------------------------------------------------- acting
    # The env hands out the block layout (``layout="blocks"``: one [E * agents_b, fan_b, F + 1]
    # tensor per ownership block, no padding), the policy is factorized per synapse, so it runs on
    # each block's real synapse slots and nothing is padded to the largest fan. Per-agent outputs
    # (log-densities, values) are [E * A] rows in agent order.
    def _chunks(self, x: torch.Tensor):
        chunk = self.config.collect_chunk or max(x.shape[0], 1)
        outs = [self.policy(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
        return outs[0] if len(outs) == 1 else tuple(torch.cat(parts) for parts in zip(*outs))

    def _values(self, obs: list[torch.Tensor]) -> torch.Tensor:
        """Values ``[E' * A]`` of whole copies given as blocks ``[E' * agents_b, fan_b, F + 1]`` (no autograd)."""
        copies = obs[0].shape[0] // (self.env.blocks[0].stop - self.env.blocks[0].start)
        value = obs[0].new_empty(copies, self.env.num_agents)
        for x, b in zip(obs, self.env.blocks):
            value[:, b.start : b.stop] = self._chunks(x)[2].view(copies, b.stop - b.start)
        return value.view(-1)

    def _noise(self) -> list[torch.Tensor]:
        """The step's Gaussian draws per block ``[E * agents_b, fan_b]``: with
        ``action_noise="padded"`` cut from one ``[E * A, K]`` draw (the numbers of the padded
        layout, so seeded runs repeat earlier versions bit for bit), with ``"blocks"`` drawn per block
        (only real synapses; different numbers, cheaper when fans differ)."""
        env = self.env
        if self.config.action_noise == "blocks":
            return [torch.randn((env.copies * (b.stop - b.start), b.fan), generator=self.action_gen,
                                device=self.device) for b in env.blocks]
        noise = torch.randn((env.num_rows, env.max_fan), generator=self.action_gen, device=self.device)
        grid = noise.view(env.copies, env.num_agents, env.max_fan)
        return [grid[:, b.start : b.stop, : b.fan].reshape(-1, b.fan) for b in env.blocks]

    def _sample(self, obs: list[torch.Tensor], t: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Act for every block of ``obs``: actions per block ``[E * agents_b, fan_b]`` drawn from the
        policy's Gaussian (they are the rollout's step ``t``, which also keeps the observations),
        their log-densities and the values ``[E * A]``. Block by block, on the CPU through the fused
        kernel (``fused_actor_critic.sample``), elsewhere through torch: the same draws, equal to
        float rounding."""
        env, buf = self.env, self.buffer
        noise = self._noise()
        fused = fused_actor_critic.applies(self.policy, obs[0])
        logp, value = obs[0].new_empty(env.copies, env.num_agents), obs[0].new_empty(env.copies, env.num_agents)
        actions = []
        for i, (b, block_obs, block_noise) in enumerate(zip(env.blocks, obs, noise)):
            n, rows = b.stop - b.start, slice(b.start, b.stop)
            x, out = buf.obs[i][t], buf.actions[i][t]
            x.copy_(block_obs)
            if fused:
                lp, v = fused_actor_critic.sample(self.policy, x, block_noise, out)
            else:
                mean, log_std, v = self._chunks(x)
                mask = x[..., -1]
                out.copy_((mean + torch.exp(log_std) * block_noise) * mask)
                lp = masked_log_prob(out, mean, log_std, mask)
            actions.append(out)
            logp[:, rows], value[:, rows] = lp.view(env.copies, n), v.view(env.copies, n)
        return actions, logp.view(-1), value.view(-1)

    def _split_by_block(self, adv: torch.Tensor, returns: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The rollout's samples grouped by ownership block, padding trimmed (observations and
        actions are stored that way; the per-agent values are sliced out): per block, ``obs [S_b, fan, F + 1]``, ``actions [S_b, fan]``, ``logp``, ``adv``,
        ``returns [S_b]`` with ``S_b = T * E * agents_of_block``."""
        buf, env = self.buffer, self.env
        shape = (self.steps, env.copies, env.num_agents)
        groups = []
        for i, b in enumerate(env.blocks):
            rows = slice(b.start, b.stop)
            groups.append({
                "obs": buf.obs[i].flatten(0, 1),  # a view: stored trimmed, in (step, copy, agent) order
                "actions": buf.actions[i].flatten(0, 1),
                **{k: v.view(shape)[:, :, rows].reshape(-1) for k, v in
                   (("logp", buf.logp), ("adv", adv), ("returns", returns))},
            })
        return groups

    def _minibatch(self, groups: list[dict[str, torch.Tensor]], picks: list[torch.Tensor]):
        """The minibatch of the samples ``picks[b]`` of every block ``b``, concatenated: log-ratio to
        the behaviour policy, entropy, value, advantage (normalized over the minibatch when
        configured) and return, and the loss's part that needs the policy's gradient. That part
        is, on the torch path, ``None`` (the caller builds the loss from the outputs, which carry
        gradients); through the fused kernel (:func:`fused_actor_critic.ppo_minibatch`, on the
        CPU) a zero scalar whose gradient is the clipped surrogate's plus the value loss's, computed
        block by block in one pass over the rows (the outputs then carry no gradient)."""
        cfg = self.config
        blocks = [(g, idx) for g, idx in zip(groups, picks) if idx.numel()]
        take = [{k: g[k].index_select(0, idx) for k in ("logp", "adv", "returns")} for g, idx in blocks]
        mb_adv = self._normalized(torch.cat([t["adv"] for t in take]))
        advs = mb_adv.split([t["adv"].numel() for t in take])
        fused = fused_actor_critic.applies(self.policy, blocks[0][0]["obs"])
        parts, anchor = [], None
        for (g, idx), t, adv in zip(blocks, take, advs):
            if fused:
                part, logp, value, real = fused_actor_critic.ppo_minibatch(
                    self.policy, g["obs"], g["actions"], idx, t["logp"], adv, t["returns"], cfg.clip_param,
                    cfg.vf_loss_coeff, 1.0 / (mb_adv.numel() * self.world))
                anchor = part if anchor is None else anchor + part
                entropy = self.policy.entropy(real)
            else:
                logp, entropy, value = self.policy.log_prob_entropy_value(g["obs"], g["actions"], idx)
            parts.append((logp - t["logp"], entropy, value, adv, t["returns"]))
        return (*(torch.cat(p) for p in zip(*parts)), anchor)

    def _normalized(self, adv: torch.Tensor) -> torch.Tensor:
        """The minibatch's advantages normalized to mean 0 and standard deviation 1 over the whole
        minibatch, every rank's share of it (when configured)."""
        n = adv.numel() * self.world  # every rank holds an equal share
        if not self.config.normalize_advantages or n <= 1:
            return adv
        if self.world == 1:
            return (adv - adv.mean()) / (adv.std() + 1e-8)
        mean = self.comm.all_reduce_(adv.sum().reshape(1)) / n
        var = self.comm.all_reduce_((adv - mean).pow(2).sum().reshape(1)) / (n - 1)
        return (adv - mean) / (var.sqrt() + 1e-8)

    # ---------------------------------------------------------------- one iteration
    def train(self) -> dict[str, Any]:
        """Collect one rollout and learn from it. Returns the iteration's metrics (flat keys, plus
        ``env_runners/episode_return_mean`` as RLlib names it, so one Tune metric fits both paths)."""
        start = time.perf_counter()
        numerics.set_kernel_threads(self.kernel_threads)  # this trainer's threads, for this iteration
        if self.torch_threads is not None and torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        collect, learn = (self.recurrent.collect, self.recurrent.learn) if self.recurrent else (self._collect, self._learn)
        if self.pool is not None:
            self.pool.train()  # the workers run this iteration in lockstep with this one
        if self.world > 1:
            with torch.no_grad():  # rank 0's policy is everyone's
                self.comm.broadcast_(list(self.policy.state_dict().values()))
        with numerics.recording() as ran:
            with torch.no_grad():
                next_value, _ = collect()
            collected = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr_at(self.iteration)
            adv, returns = gae(self.buffer.rewards, self.buffer.values, self.buffer.ends, self.buffer.end_values,
                               next_value, self.config.gamma, self.config.lambda_)
            stats = learn(adv, returns)
        self.kernels_ran |= ran
        elapsed = time.perf_counter() - start
        stats.update(collect_time_s=collected - start, learn_time_s=elapsed - (collected - start))
        ended_episodes = 0
        for part in self.comm.gather_objects(self.fresh_episodes):  # every rank's, in rank order
            self.episodes.extend(part)
            ended_episodes += len(part)
        self.fresh_episodes = []
        batch = self.steps * self.env.num_rows * self.world
        self.iteration += 1
        self.agent_steps += batch
        metrics = self._metrics(stats, batch / elapsed, elapsed, ended_episodes)
        self._log(metrics)
        return metrics

    def _collect(self) -> tuple[torch.Tensor, int]:
        buf, env = self.buffer, self.env
        ended_episodes = 0
        for t in range(self.steps):
            actions, logp, value = self._sample(self.obs, t)
            buf.logp[t].copy_(logp)
            buf.values[t].copy_(value)
            self.obs, rewards, terminated, truncated, info = env.step([a.clamp(-1.0, 1.0) for a in actions])
            ends = terminated | truncated
            buf.rewards[t].copy_(rewards)
            buf.ends[t].copy_(ends)
            buf.end_values[t].zero_()
            self.running_return += rewards
            self.running_length += 1
            if "final_obs" in info:  # some copies ended this step and were reset
                boot = truncated & ~terminated
                if bool(boot.any()):
                    copies = boot.view(env.copies, -1)[:, 0]
                    final = [x.view(env.copies, -1, *x.shape[1:])[copies].flatten(0, 1) for x in info["final_obs"]]
                    buf.end_values[t][boot] = self._values(final)
                ended_episodes += self._record_episodes(info["ended"], info["final_loss"], info["initial_loss"], terminated)
        return self._values(self.obs), ended_episodes

    def _record_episodes(self, ended, final_loss, initial_loss, terminated) -> int:
        per_copy_return = self.running_return.view(self.env.copies, -1).mean(1)  # mean over a copy's agents
        diverged = terminated.view(self.env.copies, -1)[:, 0]
        for e in torch.nonzero(ended).flatten().tolist():
            self.fresh_episodes.append((float(per_copy_return[e]), int(self.running_length[e]), float(final_loss[e]),
                                        float(initial_loss[e]), float(diverged[e])))
        rows = ended.repeat_interleave(self.env.num_agents)
        self.running_return[rows] = 0.0
        self.running_length[ended] = 0
        return int(ended.sum())

    def _learn(self, adv: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        cfg, buf = self.config, self.buffer
        n = adv.numel() * self.world  # the iteration's samples, every rank's
        b_values, b_returns = buf.values.flatten(), returns.flatten()
        # Minibatches are stratified by ownership block: each holds the same share of every
        # block's samples, so every policy call sees one fan and no padding.
        groups = self._split_by_block(adv, returns)
        batches = max(1, math.ceil(n / cfg.minibatch_size))
        clipfracs, stats = [], {}
        for _ in range(cfg.num_epochs):
            # minibatch j of a block: the samples at positions [j L / B, (j + 1) L / B) of a random
            # permutation, read in storage order
            picks = [minibatch_picks(torch.randperm(len(g["adv"]), generator=self.shuffle_gen).to(self.device), batches)
                     for g in groups]
            for j in range(batches):
                logratio, entropy, value, mb_adv, mb_returns, fused_part = self._minibatch(
                    groups, [p[j] for p in picks])
                ratio = logratio.exp()
                with torch.no_grad():
                    clipfracs.append(((ratio - 1.0).abs() > cfg.clip_param).float().mean())
                entropy = entropy.mean()
                if fused_part is None:
                    pg_loss, v_loss = self._losses(ratio, value, mb_adv, mb_returns)
                    loss = self._share(pg_loss - cfg.entropy_coeff * entropy + cfg.vf_loss_coeff * v_loss)
                else:  # the kernel's gradient of pg_loss + vf_loss_coeff * v_loss (already this rank's share)
                    loss = fused_part - cfg.entropy_coeff * self._share(entropy)
                self.optimizer.zero_grad()
                loss.backward()
                data_parallel.sum_gradients(self.comm, list(self.policy.parameters()))  # the whole minibatch's
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
                self.optimizer.step()
        with torch.no_grad():  # the statistics of the last minibatch (clipfrac: of every minibatch)
            pg_loss, v_loss = self._losses(ratio, value, mb_adv, mb_returns)
            old_approx_kl = (-logratio).mean()
            approx_kl = ((ratio - 1) - logratio).mean()
            # means over ranks (every rank's share is as large)
            means = torch.stack([pg_loss, v_loss, entropy.detach(), old_approx_kl, approx_kl, torch.stack(clipfracs).mean()])
            if self.world > 1:
                means = self.comm.all_reduce_(means) / self.world
        stats.update(zip(("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac"),
                         means.tolist()), explained_variance=self._explained_variance(b_returns, b_values))
        return stats

    def _share(self, loss: torch.Tensor) -> torch.Tensor:
        """This rank's part of a minibatch mean (the ranks' gradients are summed)."""
        return loss if self.world == 1 else loss / self.world

    def _explained_variance(self, returns: torch.Tensor, values: torch.Tensor) -> float:
        """``1 - Var(returns - values) / Var(returns)`` over the iteration's samples, every rank's."""
        if self.world == 1:
            var_y = returns.var()
            return float("nan") if var_y == 0 else float(1 - (returns - values).var() / var_y)
        res = returns - values
        sums = torch.stack([returns.sum(), returns.pow(2).sum(), res.sum(), res.pow(2).sum()]).double()
        sums = self.comm.all_reduce_(sums)
        n = returns.numel() * self.world
        var_y, var_res = ((sums[1] - sums[0] ** 2 / n) / (n - 1)), ((sums[3] - sums[2] ** 2 / n) / (n - 1))
        return float("nan") if var_y == 0 else float(1 - var_res / var_y)

    def _losses(self, ratio, value, adv, returns) -> tuple[torch.Tensor, torch.Tensor]:
        """PPO's clipped surrogate and value loss over a minibatch (the kernel's gradient is theirs)."""
        clip = self.config.clip_param
        pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
        return pg_loss, 0.5 * (value - returns).pow(2).mean()

    # ---------------------------------------------------------------- metrics
    def _metrics(self, stats: dict[str, float], sps: float, elapsed: float, ended_episodes: int) -> dict[str, Any]:
        window = list(self.episodes)
        mean = lambda i: sum(x[i] for x in window) / len(window) if window else float("nan")  # noqa: E731
        metrics = {
            "episode_return_mean": mean(0),
            "episode_len_mean": mean(1),
            "inner_loss_final": mean(2),  # the inner loss at episode end, last 100 copy-episodes
            "inner_loss_initial": mean(3),
            "inner_loss_improvement": mean(3) - mean(2),
            "inner_diverged": mean(4),
            "episodes_this_iter": ended_episodes,
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "agent_steps_per_s": sps,
            "iteration_time_s": elapsed,
            "num_agent_steps_sampled_lifetime": self.agent_steps,
            "iteration": self.iteration,
            **stats,
            "env_runners": {"episode_return_mean": mean(0), "episode_len_mean": mean(1), "inner_loss_final": mean(2),
                            "inner_loss_initial": mean(3), "inner_loss_improvement": mean(3) - mean(2),
                            "inner_diverged": mean(4)},
        }
        return metrics

    def _log(self, m: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = self.agent_steps
        tags = {
            "charts/learning_rate": m["learning_rate"], "charts/SPS": m["agent_steps_per_s"],
            "losses/value_loss": m["value_loss"], "losses/policy_loss": m["policy_loss"],
            "losses/entropy": m["entropy"], "losses/old_approx_kl": m["old_approx_kl"],
            "losses/approx_kl": m["approx_kl"], "losses/clipfrac": m["clipfrac"],
            "losses/explained_variance": m["explained_variance"],
        }
        if m["episodes_this_iter"]:
            tags.update({"charts/episodic_return": m["episode_return_mean"],
                         "charts/episodic_length": m["episode_len_mean"], "charts/inner_loss": m["inner_loss_final"]})
        for tag, value in tags.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly as the uninterrupted one."""
        return {
            "policy": self.policy.state_dict(),
            "policy_config": self.policy.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env": self.env.state_dict(),
            "obs": [x.detach().cpu().clone() for x in self.obs],  # the block layout
            "action_gen": self.action_gen.get_state(),
            "shuffle_gen": self.shuffle_gen.get_state(),
            "running_return": self.running_return.cpu().clone(),
            "running_length": self.running_length.cpu().clone(),
            "episodes": list(self.episodes),
            "iteration": self.iteration,
            "agent_steps": self.agent_steps,
            "seed": self.seed,
            "ppo_config": dataclasses.asdict(self.config),
            "env_config": self.env.config.to_dict(),
            # this process's arithmetic, with this trainer's kernel threads; a record only
            "numerics": {**numerics.describe(str(self.device), self.kernels_ran), "kernel_threads": self.kernel_threads},
            **({"memory": self.recurrent.state_dict()} if self.recurrent else {}),
            # workers > 1: ranks 1.. (their copies' envs, observations and streams; the policy is rank 0's)
            **({"worker_states": self.pool.states()} if self.pool is not None else {}),
        }

    def shard_state(self) -> dict[str, Any]:
        """A worker's part of the training state (:meth:`state_dict` less the policy and optimizer, which
        are rank 0's)."""
        state = self.state_dict()
        del state["policy"], state["optimizer"]
        return state

    # PPO settings that say how a run computes, not what: a checkpoint may resume with others.
    RUNTIME_SETTINGS = ("device", "torch_threads", "kernel_threads", "collect_chunk")

    def check_compatible(self, state: Mapping[str, Any], where: str = "the checkpoint") -> None:
        """Raise ValueError, naming the keys, when ``state`` was saved by a run whose env, policy or
        PPO configuration differs from this trainer's (but for ``RUNTIME_SETTINGS``)."""
        if "env_config" not in state:
            raise ValueError(f"{where} was saved by an earlier marl_net, without its env config: resume it with "
                             "that version, or start the run afresh")
        sections = (
            ("env", state["env_config"], self.env.config.to_dict(), EnvConfig, ()),
            ("policy", state["policy_config"], self.policy.config.to_dict(), PolicyConfig, ()),
            ("ppo", state["ppo_config"], dataclasses.asdict(self.config), FastPPOConfig, self.RUNTIME_SETTINGS),
        )
        problems = []
        for name, saved, current, cls, ignore in sections:
            defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
            diffs = config_differences(saved, current, defaults, ignore)
            if diffs:
                problems.append(f"{name} ({'; '.join(diffs)})")
        if problems:
            raise ValueError(f"{where} was trained with a different configuration, saved -> here: "
                             f"{', '.join(problems)}; build the trainer with the checkpoint's settings to resume it")

    def load_state_dict(self, state: Mapping[str, Any], where: str = "the saved state") -> None:
        """Continue from ``state`` (:meth:`state_dict`); ValueError if it is another configuration's."""
        self.check_compatible(state, where)
        if not isinstance(state["obs"], list):  # checked before anything is restored
            raise ValueError(f"{where} was saved by an earlier marl_net, whose fast path kept padded observations: "
                             "resume it with that version, or start the run afresh")
        if self.pool is not None and len(state.get("worker_states") or ()) != self.world - 1:
            raise ValueError(f"{where} holds no state for this trainer's {self.world - 1} worker processes: resume "
                             "it with the workers it was saved with")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.env.load_state_dict(state["env"])
        self.obs = [x.to(self.device).clone() for x in state["obs"]]
        self.action_gen.set_state(state["action_gen"])
        self.shuffle_gen.set_state(state["shuffle_gen"])
        self.running_return = state["running_return"].to(self.device).clone()
        self.running_length = state["running_length"].to(self.device).clone()
        self.episodes = collections.deque(state["episodes"], maxlen=100)
        self.iteration = int(state["iteration"])
        self.agent_steps = int(state["agent_steps"])
        # the run's record goes on: the kernels its iterations ran before the checkpoint (marl_net.numerics)
        self.kernels_ran = set((state.get("numerics") or {}).get("kernels_ran", ()))
        self.seed = int(state["seed"])  # the run's seed (a later save records it, not the constructor's)
        if self.recurrent:
            self.recurrent.load_state_dict(state["memory"])
        if self.pool is not None:
            self.pool.load([{**w, "policy": state["policy"], "optimizer": state["optimizer"]}
                            for w in state["worker_states"]])

    def close(self) -> None:
        """Stop the worker processes (workers > 1) and close the TensorBoard writer; the trainer
        trains no more after it."""
        if self.pool is not None:
            self.pool.close()
        if self.writer is not None:
            self.writer.close()

    CHECKPOINT_FILE = "fast_ppo.pt"

    def save(self, directory: str) -> str:
        """Write the full training state to ``directory/fast_ppo.pt``; returns the file's path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, self.CHECKPOINT_FILE)
        torch.save(self.state_dict(), path)
        return path

    def restore(self, directory: str) -> None:
        path = os.path.join(directory, self.CHECKPOINT_FILE)
        if not os.path.exists(path):
            raise ValueError(f"no fast-path checkpoint at {path!r}: pass a directory written by FastPPO.save")
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=False), where=f"the checkpoint {path!r}")
