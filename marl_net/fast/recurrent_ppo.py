"""Fast-path PPO for the recurrent policies (``PolicyConfig(memory="gru")`` or ``"gru_neuron"``):
rollout with state and a learner that recomputes the states through whole agent sequences.

:class:`~marl_net.fast.ppo.FastPPO` hands its collection and learning to :class:`RecurrentPPO` when
its policy is recurrent (``marl_net.policies.recurrent_policy``); everything else (the env, the
rollout buffer, GAE, the optimizer, metrics, checkpoints) stays the feed-forward trainer's.

- **Rollout**: every agent row of every copy carries its GRU state from step to step, one state
  tensor per ownership block (``[E * agents_of_block, fan, H_m]`` for ``"gru"``, padding trimmed
  like the buffer's observations; ``[E * agents_of_block, H_m]`` for ``"gru_neuron"``), every
  block advanced by one ``policy.step_blocks`` call. The states at the start of the rollout are
  kept. A copy whose inner network is reset (the autoreset at ``max_cycles`` or on divergence, any
  subset of copies at any step) has its rows' states set to zero before its next step; a truncated
  episode's bootstrap value reads the ended episode's state.
- **Learner**: minibatches are whole agent sequences (every step of the rollout for a set of
  (copy, agent) rows, stratified by ownership block as the feed-forward learner does), and the
  policy is unrolled through them from the kept start states, with the states zeroed where an
  inner episode begins (the policy's ``unroll_blocks``: every block of a minibatch in one call),
  so gradients flow back through the
  whole sequence (full backpropagation through time) and no state stored by an older policy is
  used inside the rollout. At the first minibatch of the first epoch the recomputed
  log-probabilities equal the rollout's (float rounding), so PPO's ratio starts at 1. With the
  default ``rollout_steps = max_cycles`` and copies in step (no divergence), a rollout is exactly
  one inner episode per copy, its start states are zero, and every sequence is a whole inner
  episode; otherwise a sequence starts from the state its row had when the rollout began.

The number of minibatches is the feed-forward learner's (``ceil(agent-steps / minibatch_size)``),
capped so that every block gives each minibatch at least one sequence. ``"gru"`` runs on torch
(the fused kernels are the feed-forward policy's); ``"gru_neuron"`` runs its synapse network on the
fused synapse kernel and its recurrence on the fused GRU kernel where they apply. All rows of a
block at once (``collect_chunk`` does not apply).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from marl_net.fast.rollout import minibatch_picks
from marl_net.policies.recurrent_policy import reset_rows
from marl_net.policies.synapse_policy import masked_entropy, masked_log_prob


class RecurrentPPO:
    """The recurrent collection and learner of a :class:`~marl_net.fast.ppo.FastPPO` ``trainer``
    (whose attributes it reads and updates: ``env``, ``policy``, ``buffer``, ``obs``, generators,
    ``optimizer``)."""

    def __init__(self, trainer):
        self.trainer = trainer
        env = trainer.env
        self.sizes = [env.copies * (b.stop - b.start) for b in env.blocks]
        shape = trainer.policy.state_shape  # per agent: (fan, H_m) per synapse row, (H_m,) per neuron
        self.state = [torch.zeros(n, *shape(b.fan), device=trainer.device) for n, b in zip(self.sizes, env.blocks)]
        self.start_state = [s.clone() for s in self.state]

    # ---------------------------------------------------------------- acting
    def _block_rows(self, obs):
        """``obs [E * A, K, F + 1]`` -> per block the trimmed rows ``[E * n_b, fan_b, F + 1]``; the
        env's block layout (a list of those) as it is."""
        if isinstance(obs, (list, tuple)):
            return list(obs)
        env = self.trainer.env
        grid = obs.view(env.copies, env.num_agents, env.max_fan, -1)
        return [grid[:, b.start : b.stop, : b.fan].reshape(n, b.fan, -1) for n, b in zip(self.sizes, env.blocks)]

    def _sample(self, obs: torch.Tensor, t: int):
        """Act for every row (the feed-forward path's noise draws, one per padded slot): actions per
        block ``[E * agents_b, fan_b]`` (the env's block layout), log-densities and values
        ``[E * A]``; states advance one step."""
        tr, env, buf = self.trainer, self.trainer.env, self.trainer.buffer
        noise = torch.randn((env.num_rows, env.max_fan), generator=tr.action_gen, device=tr.device)
        a, k = env.num_agents, env.max_fan
        noise = noise.view(env.copies, a, k)
        xs = [buf.obs[i][t].copy_(rows) for i, rows in enumerate(self._block_rows(obs))]
        heads, self.state = tr.policy.step_blocks(xs, self.state)
        actions = []
        logp, value = xs[0].new_empty(env.copies, a), xs[0].new_empty(env.copies, a)
        for i, (b, x, (mean, log_std, v)) in enumerate(zip(env.blocks, xs, heads)):
            n, cols = b.stop - b.start, slice(b.start, b.stop)
            out = buf.actions[i][t]
            mask = x[..., -1]
            out.copy_((mean + torch.exp(log_std) * noise[:, cols, : b.fan].reshape(-1, b.fan)) * mask)
            actions.append(out)
            logp[:, cols] = masked_log_prob(out, mean, log_std, mask).view(env.copies, n)
            value[:, cols] = v.view(env.copies, n)
        return actions, logp.view(-1), value.view(-1)

    def _values(self, obs: torch.Tensor) -> torch.Tensor:
        """Values ``[E * A]`` of ``obs`` read with the current states (which stay as they are)."""
        env = self.trainer.env
        blocks = self._block_rows(obs)
        value = blocks[0].new_empty(env.copies, env.num_agents)
        heads, _ = self.trainer.policy.step_blocks(blocks, self.state)
        for b, (_, _, v) in zip(env.blocks, heads):
            value[:, b.start : b.stop] = v.view(env.copies, -1)
        return value.view(-1)

    def collect(self) -> tuple[torch.Tensor, int]:
        """One rollout (as ``FastPPO._collect``), the states carried and zeroed at inner resets."""
        tr, buf, env = self.trainer, self.trainer.buffer, self.trainer.env
        for start, state in zip(self.start_state, self.state):
            start.copy_(state)
        ended_episodes = 0
        for t in range(tr.steps):
            action, logp, value = self._sample(tr.obs, t)
            buf.logp[t].copy_(logp)
            buf.values[t].copy_(value)
            tr.obs, rewards, terminated, truncated, info = env.step([x.clamp(-1.0, 1.0) for x in action])
            buf.rewards[t].copy_(rewards)
            buf.ends[t].copy_(terminated | truncated)
            buf.end_values[t].zero_()
            tr.running_return += rewards
            tr.running_length += 1
            if "final_obs" in info:  # some copies ended this step and were reset
                boot = truncated & ~terminated
                if bool(boot.any()):  # V(final obs) with the ended episode's state
                    buf.end_values[t][boot] = self._values(info["final_obs"])[boot]
                ended_episodes += tr._record_episodes(info["ended"], info["final_loss"], info["initial_loss"],
                                                      terminated)
                self.state = [reset_rows(s, info["ended"].repeat_interleave(b.stop - b.start))
                              for s, b in zip(self.state, env.blocks)]
        return self._values(tr.obs), ended_episodes

    # ---------------------------------------------------------------- learning
    def sequences(self, adv: torch.Tensor, returns: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The rollout per ownership block as agent sequences: ``obs [T, L_b, fan, F + 1]``,
        ``actions [T, L_b, fan]``, ``logp``, ``adv``, ``returns`` and ``starts [T, L_b]`` (true
        where an inner episode begins at step t, i.e. the row's copy ended at step t - 1), and the
        start states ``[L_b, fan, H_m]``; ``L_b = E * agents_of_block``."""
        tr, buf, env = self.trainer, self.trainer.buffer, self.trainer.env
        shape = (tr.steps, env.copies, env.num_agents)
        groups = []
        for i, b in enumerate(env.blocks):
            cols = lambda x: x.view(shape)[:, :, b.start : b.stop].reshape(tr.steps, -1)  # noqa: E731
            ends = cols(buf.ends)
            starts = torch.zeros_like(ends)
            starts[1:] = ends[:-1]
            groups.append({"obs": buf.obs[i], "actions": buf.actions[i], "logp": cols(buf.logp), "adv": cols(adv),
                           "returns": cols(returns), "starts": starts, "state": self.start_state[i]})
        return groups

    def evaluate(self, groups: list[dict[str, torch.Tensor]], idxs: list[torch.Tensor]):
        """The policy unrolled through the sequences ``idxs[b]`` of every block ``groups[b]`` (one
        ``unroll_blocks`` call): per block the log-densities of their actions, the entropies and
        the values, each ``[T, len(idxs[b])]`` (with gradients)."""
        obs = [g["obs"].index_select(1, idx) for g, idx in zip(groups, idxs)]
        states = [g["state"].index_select(0, idx) for g, idx in zip(groups, idxs)]
        starts = [g["starts"].index_select(1, idx) for g, idx in zip(groups, idxs)]
        heads, _ = self.trainer.policy.unroll_blocks(obs, states, starts)
        out = []
        for g, idx, x, (mean, log_std, value) in zip(groups, idxs, obs, heads):
            mask = x[..., -1]
            out.append((masked_log_prob(g["actions"].index_select(1, idx), mean, log_std, mask),
                        masked_entropy(log_std, mask), value))
        return out

    def learn(self, adv: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """PPO epochs over minibatches of whole agent sequences (``FastPPO._learn``'s loss and statistics)."""
        tr, cfg, buf = self.trainer, self.trainer.config, self.trainer.buffer
        groups = self.sequences(adv, returns)
        batches = max(1, min(math.ceil(adv.numel() / cfg.minibatch_size), *self.sizes))
        clipfracs = []
        for _ in range(cfg.num_epochs):
            picks = [minibatch_picks(torch.randperm(n, generator=tr.shuffle_gen).to(tr.device), batches)
                     for n in self.sizes]
            for j in range(batches):
                idxs = [p[j] for p in picks]
                parts = [(logp - g["logp"][:, idx], entropy, value, g["adv"][:, idx], g["returns"][:, idx])
                         for g, idx, (logp, entropy, value) in zip(groups, idxs, self.evaluate(groups, idxs))]
                logratio, entropy, value, mb_adv, mb_returns = (torch.cat([x.reshape(-1) for x in p]) for p in zip(*parts))
                mb_adv = tr._normalized(mb_adv)
                ratio = logratio.exp()
                with torch.no_grad():
                    clipfracs.append(((ratio - 1.0).abs() > cfg.clip_param).float().mean())
                entropy = entropy.mean()
                pg_loss, v_loss = tr._losses(ratio, value, mb_adv, mb_returns)
                loss = pg_loss - cfg.entropy_coeff * entropy + cfg.vf_loss_coeff * v_loss
                tr.optimizer.zero_grad()
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(tr.policy.parameters(), cfg.grad_clip)
                tr.optimizer.step()
        with torch.no_grad():  # the statistics of the last minibatch (clipfrac: of every minibatch)
            old_approx_kl = (-logratio).mean()
            approx_kl = ((ratio - 1) - logratio).mean()
        explained_var = tr._explained_variance(returns.flatten(), buf.values.flatten())
        return dict(policy_loss=float(pg_loss.detach()), value_loss=float(v_loss.detach()),
                    entropy=float(entropy.detach()), old_approx_kl=float(old_approx_kl), approx_kl=float(approx_kl),
                    clipfrac=float(torch.stack(clipfracs).mean()), explained_variance=explained_var)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"state": [s.detach().cpu().clone() for s in self.state]}

    def load_state_dict(self, state: dict) -> None:
        saved = state["state"]
        if [tuple(s.shape) for s in saved] != [tuple(s.shape) for s in self.state]:
            raise ValueError("the checkpoint's recurrent states do not fit this trainer's network and copies: "
                             "restore into a trainer built with the checkpoint's env, policy and ppo settings")
        self.state = [s.to(self.trainer.device).clone() for s in saved]
