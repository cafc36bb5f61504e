"""THE dynamics of the network-weights environment, batched over E network copies.

One step: apply every agent's weight changes -> draw a minibatch -> forward -> loss -> rewards ->
divergence check -> observations. Both views call this and only this: the PettingZoo env
(``marl_net.envs.network_weights_v0``, E = 1, dicts per agent) and the fast path's batched env
(tensors ``[E * A, ...]``). Nothing here loops over agents.

Layouts: ``layout="padded"`` (the default; the PettingZoo env's) hands out observations
``[E, A, K, F + 1]`` padded to the largest fan K and takes actions ``[E, A, K]``;
``layout="blocks"`` hands out one ``[E, agents_b, fan_b, F + 1]`` per ownership block and takes
actions ``[E, agents_b, fan_b]`` per block, with no padding, so its work and memory follow the
synapses that exist (see ``marl_net.ownership``). The dynamics, rewards and random draws are the
same in both; ``tests/test_fast_vector_env.py`` holds the two equal to the PettingZoo env.

Randomness: copy e has two generators, one for data (task sampling, weight init, minibatches)
and one for noise (perturbations, stochastic units, and the fixed feedback matrices of the
feedback-alignment features, drawn at reset only when such a feature is enabled), both seeded
from the copy's seed. A batched run seeded ``[s_0, ..., s_{E-1}]`` therefore equals E single-copy
runs seeded ``s_e``: bit for bit at one torch thread (``torch.set_num_threads(1)``); with more, MKL may split a batched matmul's
reduction across threads differently for different batch sizes (seen on AMD EPYC), and the copies
then agree to float rounding only.

RL inner tasks (``marl_net.tasks.rl``): the network is a policy acting in ``batch_size`` inner
copies of its task. A step then applies the weight changes, runs the forward pass on the RL²
input, samples actions (noise generator), steps the task (data generator) and takes the loss
``-mean reward``; the running reward baseline ``[E]`` is core state, reset to 0 with the network.
Supervised tasks take none of these paths and draw exactly what they drew before. With
``rl_draws="chung"`` (``EnvConfig``) the initial weights, the Bernoulli units' and the actions'
uniforms and CartPole's start states are drawn as ``marl-net reproduce chung`` draws them for the
same seeds (one uniform stream per copy, :class:`marl_net.reproduce.randomness.UniformStream`), and
each layer's pre-activation is summed as Chung's actor sums it, so the two agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from marl_net import accumulators, losses, seeding
from marl_net.config import EnvConfig
from marl_net.context import StepContext
from marl_net.feedback_alignment import draw_feedback, uses_feedback
from marl_net.network import forward, init_weights, join_bias, split_bias
from marl_net.observations import LAYOUTS, observe
from marl_net.ownership import Ownership
from marl_net.reproduce.randomness import STREAM_ACTOR, UniformStream, copy_generators
from marl_net.rewards import REWARDS, compute_rewards
from marl_net.rules.reinforce import coagent_preact
from marl_net.rules.reinforce import init_params as chung_init_params
from marl_net.tasks import make_task, sample_task_id
from marl_net.tasks.rl import RLTask, assign_state, index_state


@dataclass
class StepResult:
    obs: torch.Tensor | list[torch.Tensor]  # padded [E, A, K, F + 1], or per block [E, agents_b, fan_b, F + 1]
    rewards: torch.Tensor | None  # [E, A]; None from a core built with rewards=False
    terminated: torch.Tensor  # [E] bool: diverged
    truncated: torch.Tensor  # [E] bool: reached max_cycles
    loss: torch.Tensor  # [E] inner loss after the step
    diverged: torch.Tensor  # [E] bool


# Steps of minibatch indices a copy draws at its reset (longer episodes draw the rest step by step):
# memory stays at most BATCH_TABLE_STEPS x batch_size indices per copy.
BATCH_TABLE_STEPS = 256


class EnvCrash(RuntimeError):
    """Raised on purpose by ``crash_probability`` (fault-tolerance tests)."""


class NetworkWeightsCore:
    def __init__(self, config: EnvConfig, copies: int = 1, device: str | torch.device = "cpu",
                 layout: str = "padded", rewards: bool = True):
        if copies < 1:
            raise ValueError(f"copies={copies!r} must be >= 1")
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is unknown; choose one of {list(LAYOUTS)}")
        self.layout = layout
        # rewards=False: step() skips the reward scheme (its result's rewards are None), for callers
        # that need only the inner loss (evaluation). No registered scheme draws random numbers, so
        # the dynamics and every copy's streams are the same either way.
        self.with_rewards = bool(rewards)
        self.config = config
        self.copies = int(copies)
        self.device = torch.device(device)
        self.spec = config.network_spec()
        self.ownership = Ownership(self.spec, config.ownership)
        self.task = make_task(config.task, self.spec.layers[0], self.spec.layers[-1], **config.task_kwargs)
        self.task.check_network(self.spec.layers[0], self.spec.layers[-1])
        self.rl = isinstance(self.task, RLTask)
        if self.rl and self.task.reference_logit and "gradient" in accumulators.signals_of(config.observations):
            raise ValueError("the 'gradient' feature (REINFORCE surrogate over every logit) is undefined with "
                             "reference_logit=True: drop it, or pass reference_logit=False")
        self.chung_draws = config.rl_draws == "chung"
        self.seeds: list[int] | None = None
        self.chung_stream: UniformStream | None = None
        self.scheme = REWARDS[config.reward]
        self.num_features = len(config.observations) + 1
        # accumulator features (ema<decay>[<signal>]): their state, {name: [E, rows, cols] per layer},
        # zero at each copy's reset and updated once per evaluation; empty when none is enabled
        self.accumulator_specs = accumulators.accumulators_of(config.observations)
        self.accumulators: dict[str, list[torch.Tensor]] = {}
        self.data_gens: list[torch.Generator] | None = None
        self.noise_gens: list[torch.Generator] | None = None
        self.params: list[torch.Tensor] | None = None
        # feedback matrices (FA/DFA features), drawn at each reset only when such a feature is enabled
        self.feedback_mode = config.feedback if uses_feedback(accumulators.signals_of(config.observations)) else None
        self.feedback = None  # marl_net.feedback_alignment.Feedback over all copies
        self._crash_rng = None

    # ---------------------------------------------------------------- seeding and reset
    @property
    def is_reset(self) -> bool:
        return self.params is not None

    def seed(self, seeds: Sequence[int]) -> None:
        if len(seeds) != self.copies:
            raise ValueError(f"got {len(seeds)} seeds for {self.copies} copies; pass one seed per copy")
        self.seeds = [int(s) for s in seeds]
        self.data_gens = seeding.make_generators([seeding.seed_from(s, 0) for s in seeds])
        self.noise_gens = seeding.make_generators([seeding.seed_from(s, 1) for s in seeds])
        import random

        self._crash_rng = random.Random(seeding.seed_from(seeds[0], 2))

    def reset(self, copies: torch.Tensor | None = None) -> torch.Tensor:
        """Start a fresh episode (new task instance, fresh weights) in every copy, or only in the
        copies where the bool mask ``copies`` is True. Returns observations in the core's layout.
        Only the reset copies draw random numbers, so each copy's stream is its own."""
        if self.data_gens is None:
            raise ValueError("seed the core before reset: call seed([...]) with one seed per copy")
        if copies is None:
            idx = list(range(self.copies))
        else:
            if not self.is_reset:
                raise ValueError("the first reset must reset every copy: call reset() without a mask")
            if self.chung_draws:
                raise ValueError("rl_draws='chung' runs one lifetime per seed in one uniform stream: reset every "
                                 "copy (reset() without a mask)")
            idx = torch.nonzero(copies.cpu()).flatten().tolist()
            if not idx:
                return self.last_obs
        gens = [self.data_gens[i] for i in idx]
        task_ids = [sample_task_id_torch(g, self.config.split) for g in gens]
        episode = self._new_episodes(gens, task_ids)  # the task's part: data set, or RL states
        feedback = None
        if self.feedback_mode is not None:  # from the noise generators, before the reset's forward pass
            feedback = draw_feedback(self.spec, self.feedback_mode, [self.noise_gens[i] for i in idx], self.device)
        params = episode.pop("params")
        if len(idx) == self.copies:  # every copy: fresh tensors, nothing to index
            for name, value in episode.items():
                setattr(self, name, value)
            self.params, self.task_ids, self.feedback = params, task_ids, feedback
            self.delta = [torch.zeros_like(p) for p in params]
            self.t = torch.zeros(self.copies, dtype=torch.long, device=self.device)
            ctx = self._evaluate(None, prev_loss=None)
            self.loss = ctx.loss
            if not self.rl:  # (an RL episode's initial loss is its task's reward scale, set above)
                self.initial_loss = ctx.loss.clone()
            if self.accumulator_specs:
                self.accumulators = accumulators.update(self.accumulator_specs, ctx, None)
            self.last_obs = observe(ctx, self.config.observations, self.layout)
            return self.last_obs
        sel = torch.as_tensor(idx, device=self.device)
        for name, value in episode.items():
            if name == "rl_state":
                assign_state(self.rl_state, sel, value)
            else:
                getattr(self, name)[sel] = value
        for p, d, new in zip(self.params, self.delta, params):
            p[sel] = new
            d[sel] = 0.0
        if feedback is not None:
            for b, new in zip(self.feedback.matrices, feedback.matrices):
                b[sel] = new
        self.t[sel] = 0
        for i, t in zip(idx, task_ids):
            self.task_ids[i] = t
        ctx = self._evaluate(sel, prev_loss=None)
        self.loss[sel] = ctx.loss
        if not self.rl:
            self.initial_loss[sel] = ctx.loss
        if self.accumulator_specs:
            for name, layers in accumulators.update(self.accumulator_specs, ctx, None).items():
                for state, fresh in zip(self.accumulators[name], layers):
                    state[sel] = fresh
        new_obs = observe(ctx, self.config.observations, self.layout)
        if self.layout == "padded":
            self.last_obs[sel] = new_obs
        else:
            for old, new in zip(self.last_obs, new_obs):
                old[sel] = new
        return self.last_obs

    def _new_episodes(self, gens: list[torch.Generator], task_ids: list[int]) -> dict:
        """Fresh weights and the task's part of new episodes for the copies drawing from ``gens``,
        as ``{core attribute: value}``, in the order the copies' data streams are drawn. Supervised:
        the instances' data sets, weights, then the minibatch indices of the episode's first
        ``BATCH_TABLE_STEPS`` steps (drawn now in one call per copy: the values, and generator
        states, that a draw at every step would give; integer draws are serial). RL: weights, the
        inner copies' first states, a zero reward baseline, and the task's reward scale as the
        initial loss (see ``marl_net.tasks.rl``)."""
        if self.rl and self.chung_draws:  # every copy (partial resets are refused): Chung's draws
            actor_gens = copy_generators(self.seeds, STREAM_ACTOR, self.device)
            init = chung_init_params(self.spec, actor_gens, device=self.device)
            params = join_bias(init[0::2], init[1::2])
            self.chung_stream = UniformStream(actor_gens, self._chung_width())
            self.task.use_gym_resets(self.seeds)
        elif self.rl:
            params = join_bias(*init_weights(self.spec, gens, device=self.device))
        if self.rl:
            return {
                "params": params,
                "rl_state": self.task.initial_state(task_ids, gens, self.config.batch_size, self.device),
                "baseline": torch.zeros(len(gens), device=self.device),
                "initial_loss": torch.full((len(gens),), float(self.task.reward_scale), device=self.device),
            }
        inputs, targets = (t.to(self.device) for t in self.task.instances(task_ids))
        params = join_bias(*init_weights(self.spec, gens, device=self.device))
        steps = min(self.config.max_cycles + 1, BATCH_TABLE_STEPS)
        batch_index = seeding.randint(gens, inputs.shape[1], (steps, self.config.batch_size), device=self.device)
        return {"params": params, "inputs": inputs, "targets": targets, "batch_index": batch_index}

    # ---------------------------------------------------------------- step
    def step(self, actions: torch.Tensor) -> StepResult:
        """Apply ``actions`` (in [-1, 1]) and advance one step: padded ``[E, A, K]`` (padding slots
        ignored), or in the block layout one ``[E, agents_b, fan_b]`` per block."""
        if not self.is_reset:
            raise ValueError("step() before reset(): call reset() first")
        if self.config.crash_probability and self._crash_rng.random() < self.config.crash_probability:
            raise EnvCrash(f"simulated crash (crash_probability={self.config.crash_probability})")
        actions = self.check_actions(actions)
        per_layer = self.ownership.from_agents(actions) if self.layout == "padded" else self.ownership.from_blocks(actions)
        delta = self._weight_changes(per_layer)
        self.params = [p + d for p, d in zip(self.params, delta)]
        self.delta = delta
        self.t = self.t + 1
        prev_loss = self.loss
        ctx = self._evaluate(None, prev_loss=prev_loss)
        diverged = self._diverged(ctx.loss)
        rewards = None
        if self.with_rewards:
            # the scheme's rewards are checked finite on the copies that did not diverge; a diverged
            # copy's (NaN or inf, the network's doing) are replaced by the penalty
            rewards = compute_rewards(ctx, self.scheme, self.config.local_ratio, self.config.reward_unit, diverged)
            penalty = torch.full_like(rewards, -self.config.divergence_penalty)
            rewards = torch.where(diverged.unsqueeze(1), penalty, rewards)
        self.loss = ctx.loss
        if self.accumulator_specs:
            self.accumulators = accumulators.update(self.accumulator_specs, ctx, self.accumulators)
        obs = observe(ctx, self.config.observations, self.layout)
        self.last_obs = obs
        truncated = (self.t >= self.config.max_cycles) & ~diverged
        return StepResult(obs, rewards, diverged, truncated, ctx.loss, diverged)

    def _observed(self, name: str) -> list[torch.Tensor]:
        """Feature ``name`` as the agents were last shown it, per layer in weight space."""
        col = self.config.observations.index(name)
        if self.layout == "padded":
            return self.ownership.from_agents(self.last_obs[..., col])
        return self.ownership.from_blocks([obs[..., col] for obs in self.last_obs])

    def check_actions(self, actions: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Validate the actions of the core's layout and return them clipped to [-1, 1] (padding
        zeroed): ``[E, A, K]`` padded, or a list of ``[E, agents_b, fan_b]``, one per block."""
        own = self.ownership
        if self.layout == "padded":
            expected = (self.copies, own.num_agents, own.max_fan)
            if not isinstance(actions, torch.Tensor):
                raise ValueError(f"actions must be a torch.Tensor of shape {expected}, got {type(actions).__name__}")
            if tuple(actions.shape) != expected:
                raise ValueError(f"actions have shape {tuple(actions.shape)}; expected {expected} (copies, agents, max fan)")
            return self._checked(actions, own.mask.to(self.device))
        shapes = own.block_shapes(self.copies)
        if not isinstance(actions, (list, tuple)) or len(actions) != len(shapes):
            raise ValueError(f"the block layout takes a list of {len(shapes)} action tensors, one per ownership "
                             f"block, shaped {shapes}; got {type(actions).__name__}")
        for i, (a, shape) in enumerate(zip(actions, shapes)):
            if not isinstance(a, torch.Tensor) or tuple(a.shape) != shape:
                got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                raise ValueError(f"actions of block {i} have shape {got}; expected {shape} (copies, agents, fan)")
        return [self._checked(a, None) for a in actions]

    def _checked(self, actions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One action tensor checked (float, finite, in [-1, 1] unless clipping) and clipped, times
        the padding ``mask`` where there is one."""
        if not actions.is_floating_point():
            raise ValueError(f"actions have dtype {actions.dtype}; pass floats (torch.float32)")
        actions = actions.to(self.device, torch.float32)
        if not bool(_max_abs(actions, dims=None) <= torch.finfo(actions.dtype).max):  # NaN or inf somewhere
            raise ValueError("actions contain NaN or inf; every action must be a finite number in [-1, 1]")
        outside = actions.abs() if mask is None else actions.abs() * mask
        if not self.config.clip_actions and (outside > 1.0).any():
            raise ValueError("actions outside [-1, 1] with clip_actions=False; scale them or pass clip_actions=True")
        clipped = actions.clamp(-1.0, 1.0)
        return clipped if mask is None else clipped * mask

    def _weight_changes(self, actions: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per layer, the step's weight changes from the agents' ``actions``: ``action_scale`` times
        them, plus the base rule's change where there is one; with ``correction="relative"`` the
        base rule's change times ``exp(action_scale * action)`` (``EnvConfig._check_base``)."""
        cfg = self.config
        if cfg.base_update is None:
            return [a * cfg.action_scale for a in actions]
        base = [cfg.base_rate * f for f in self._observed(cfg.base_update)]
        if cfg.correction == "relative":
            return [b * torch.exp(a * cfg.action_scale) for a, b in zip(actions, base)]
        return [a * cfg.action_scale + b for a, b in zip(actions, base)]

    def _diverged(self, loss: torch.Tensor) -> torch.Tensor:
        """``[E]`` bool: the copy's loss or any of its weights is NaN, infinite or beyond
        ``divergence_threshold`` in absolute value. ``|x| <= limit`` is False for NaN and infinities,
        so one comparison per copy and tensor tells all three (``limit`` is at most the dtype's
        largest finite value, for thresholds that would round to infinity)."""
        thr = self.config.divergence_threshold
        within = loss.abs() <= min(thr, torch.finfo(loss.dtype).max)
        for p in self.params:
            within &= _max_abs(p, dims=tuple(range(1, p.dim()))) <= min(thr, torch.finfo(p.dtype).max)
        return ~within

    def _evaluate(self, sel: torch.Tensor | None, prev_loss: torch.Tensor | None) -> StepContext:
        """Take each copy's minibatch, run the forward pass and build the step's context, for every
        copy or for the copies indexed by ``sel``."""
        take = (lambda x: x) if sel is None else (lambda x: x[sel])
        idx = None if sel is None else sel.tolist()
        pick = (lambda gens: gens) if sel is None else (lambda gens: [gens[i] for i in idx])
        params, delta = [take(p) for p in self.params], [take(d) for d in self.delta]
        if self.rl:
            state = self.rl_state if sel is None else index_state(self.rl_state, sel)
            x = self.task.network_input(state)
        else:
            x, y = seeding.take_minibatch(self.inputs, self.targets, self._batch_rows(sel, pick), idx)
        weights, biases = split_bias(self.spec, params)
        noise_gens = pick(self.noise_gens)
        bernoulli_uniforms, action_uniforms = self._chung_uniforms() if self.chung_draws else (None, None)
        fwd = forward(self.spec, weights, x, biases, generators=noise_gens, bernoulli_uniforms=bernoulli_uniforms,
                      preact_fn=_chung_preact if self.chung_draws else None)
        rl_step = None
        if self.rl:  # act, step the task, keep the new state and baseline; loss = -mean reward
            state, rl_step = self.task.act(state, fwd.output, take(self.baseline), noise_gens, pick(self.data_gens),
                                           action_uniforms)
            baseline = rl_step.baseline + self.task.baseline_rate * rl_step.rpe
            if sel is None:
                self.rl_state, self.baseline = state, baseline
            else:
                assign_state(self.rl_state, sel, state)
                self.baseline[sel] = baseline
            y = torch.stack([rl_step.actions.to(x.dtype), rl_step.rewards - rl_step.baseline.unsqueeze(1)], dim=-1)
            loss = -rl_step.rewards.mean(1)
        else:
            loss = losses.compute(self.task.loss, fwd.output, y)
        self.last_batch = (x, y)  # the minibatch of the last reset/step (for inspection and tests)
        return StepContext(
            spec=self.spec,
            ownership=self.ownership,
            loss_name=self.task.loss,
            params=params,
            delta=delta,
            inputs=x,
            targets=y,
            fwd=fwd,
            loss=loss,
            prev_loss=loss if prev_loss is None else prev_loss,
            initial_loss=(take(self.initial_loss) if self.rl else loss) if prev_loss is None else self.initial_loss,
            t=take(self.t),
            max_cycles=self.config.max_cycles,
            action_scale=self.config.action_scale,
            noise_generators=noise_gens,
            feedback=None if self.feedback is None else self.feedback.select(sel),
            rl=rl_step,
        )

    def _chung_width(self) -> int:
        """Uniforms per copy and step under ``rl_draws="chung"``: one per Bernoulli hidden unit, one
        for the action (``CoagentActor.num_uniforms``)."""
        hidden = self.spec.layers[1:-1]
        return (sum(hidden) if self.spec.hidden_activation == "bernoulli" else 0) + 1

    def _chung_uniforms(self) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """This step's row of the copies' uniform streams, split as Chung's actor reads it: the
        hidden layers' Bernoulli uniforms ``[E, 1, n]`` in order, then the action's ``[E, 1]``."""
        u = self.chung_stream.next().to(self.device)
        per_layer: list[torch.Tensor | None] = []
        col = 0
        for l in range(self.spec.num_layers):
            if l < self.spec.num_layers - 1 and self.spec.hidden_activation == "bernoulli":
                n = self.spec.layers[l + 1]
                per_layer.append(u[:, col:col + n].unsqueeze(1))
                col += n
            else:
                per_layer.append(None)
        return per_layer, u[:, -1:]

    def _batch_rows(self, sel: torch.Tensor | None, pick) -> torch.Tensor:
        """``[E', batch_size]``: the minibatch indices of every copy (or of the copies ``sel``) at its
        current step, from the table its reset drew; a copy stepped past the table (``max_cycles``,
        or ``BATCH_TABLE_STEPS`` for longer episodes) draws them now, continuing its stream."""
        t = self.t if sel is None else self.t[sel]
        table = self.batch_index if sel is None else self.batch_index[sel]
        last = table.shape[1] - 1
        rows = table[torch.arange(len(t), device=t.device), t.clamp(max=last)]
        beyond = t > last
        if bool(beyond.any()):
            gens = pick(self.data_gens)
            late = [gens[i] for i in torch.nonzero(beyond).flatten().tolist()]
            rows[beyond] = seeding.randint(late, self.inputs.shape[1], (self.config.batch_size,), device=rows.device)
        return rows


def _chung_preact(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``rl_draws="chung"``'s pre-activation ``[E, 1, n_out]`` of one inner copy's input ``[E, 1, n_in]``:
    Chung's actor's sum (:func:`marl_net.rules.reinforce.coagent_preact`), on contiguous copies of
    the weight and bias columns of the env's ``[W | b]`` layout (a strided operand may take another
    BLAS path, which rounds differently)."""
    return coagent_preact(w.contiguous(), b.contiguous(), h[:, 0]).unsqueeze(1)


def _max_abs(x: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    """``max |x|`` over ``dims`` (all of them for None), NaN wherever a NaN is among them (``amax``
    propagates NaN): one vectorized reduction where ``isfinite(x).all()`` or a comparison followed
    by ``all`` take several passes over bools."""
    return x.abs().amax() if dims is None else x.abs().amax(dim=dims)


def sample_task_id_torch(gen: torch.Generator, split: str) -> int:
    """A task id of ``split`` drawn from a torch generator (see ``marl_net.tasks.sample_task_id``)."""
    import numpy as np

    return sample_task_id(np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen))), split)
