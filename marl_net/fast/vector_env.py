"""The batched view of network_weights_v0: E network copies, every neuron of every copy a row.

Where the PettingZoo env hands out one dict entry per agent, this view hands out tensors with
copies and agents flattened into one batch dimension of ``N = E * A`` rows, so a policy sees every
neuron of every copy in one call and nothing loops over agents. It calls the same dynamics as
``network_weights_v0`` (``marl_net.core.NetworkWeightsCore``) and re-implements none of them:
``tests/test_fast_vector_env.py`` holds the two views equal step by step.

Usage::

    from marl_net.config import EnvConfig
    from marl_net.fast.vector_env import VectorNetworkEnv

    env = VectorNetworkEnv(EnvConfig(layers=(8, 16, 4), max_cycles=20), copies=16)
    obs, info = env.reset(seed=0)                      # [E * A, K, F + 1]
    actions = torch.rand(env.num_rows, env.max_fan) * 2 - 1
    obs, rewards, terminated, truncated, info = env.step(actions)   # rewards [E * A]

Rows ``e * A .. (e + 1) * A - 1`` are the agents of copy e, in ``env.agent_ids`` order.

With ``layout="blocks"`` observations and actions come per ownership block, without padding
(``marl_net.core``): a list with one ``[E * agents_b, fan_b, F + 1]`` observation (and one
``[E * agents_b, fan_b]`` action) per block, rows in (copy, agent) order within the block; rewards
and flags stay ``[E * A]`` in ``env.agent_ids`` order. ``final_obs`` is then such a list too. Copy e is
seeded ``seed + e``, so it equals ``network_weights_v0.parallel_env(...).reset(seed=seed + e)``
stepped with the same actions.

Autoreset: a copy whose episode ended (truncated at ``max_cycles`` or terminated by divergence) is
reset at once, inside the same ``step`` call, through ``core.reset(mask)``; only that copy draws
random numbers. The returned observation rows of that copy are then the new episode's first
observation, and ``info`` carries the ended episode's last observation (``final_obs``, the full
``[E * A, K, F + 1]`` table before any reset), loss (``final_loss [E]``) and loss at reset
(``initial_loss [E]``), with ``ended [E]``
marking which copies ended. ``rewards``, ``terminated`` and ``truncated`` are those of the step
that ended the episode. This is the PettingZoo env's ``reset()`` without a seed, so a copy's
stream after an autoreset equals the PettingZoo env reset again without a seed.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.feedback_alignment import Feedback

# Core attributes that make up an episode in flight (see NetworkWeightsCore.reset and step).
_TENSOR_STATE = ("inputs", "targets", "batch_index", "t", "loss", "initial_loss", "last_obs")
_LIST_STATE = ("params", "delta")
# RL tasks (marl_net.tasks.rl) keep the inner copies' state and the reward baseline instead of a data set.
_RL_TENSOR_STATE = ("t", "loss", "initial_loss", "last_obs", "baseline")


def _tensor_state(core: NetworkWeightsCore) -> tuple[str, ...]:
    return _RL_TENSOR_STATE if core.rl else _TENSOR_STATE


class VectorNetworkEnv:
    """``copies`` network copies as one batched env of ``copies * num_agents`` rows."""

    def __init__(
        self,
        config: EnvConfig | Mapping[str, Any],
        copies: int = 1,
        device: str | torch.device = "cpu",
        flat_obs: bool = False,
        layout: str = "padded",
    ):
        if not isinstance(config, EnvConfig):
            config = EnvConfig.from_kwargs(**dict(config))
        self.config = config
        self.core = NetworkWeightsCore(config, copies=copies, device=device, layout=layout)
        self.layout = layout
        self.copies = self.core.copies
        self.device = self.core.device
        self.flat_obs = bool(flat_obs)
        own = self.core.ownership
        self.agent_ids = own.agent_ids
        self.num_agents = own.num_agents  # A, per copy
        self.num_rows = self.copies * self.num_agents  # N = E * A
        self.max_fan = own.max_fan  # K
        self.num_features = self.core.num_features  # F + 1 (mask included)
        self.mask = own.mask.to(self.device).repeat(self.copies, 1)  # [N, K] bool
        # Ownership blocks: the agents [start, stop) of one weight layer, each with ``fan`` real slots.
        self.blocks = own.blocks
        self._needs_reset = True

    # ---------------------------------------------------------------- shapes
    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one row's observation in the padded layout: ``(K, F + 1)`` or ``(K * (F + 1),)``
        with ``flat_obs`` (in the block layout a row of block b is ``(fan_b, F + 1)``)."""
        k, f = self.max_fan, self.num_features
        return (k * f,) if self.flat_obs else (k, f)

    def _rows(self, obs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """``[E, A, K, F + 1]`` -> ``[E * A, K, F + 1]`` (or flat), a view, no copy; in the block
        layout each block ``[E, n, fan, F + 1]`` -> ``[E * n, fan, F + 1]``."""
        if self.layout == "blocks":
            return [x.flatten(0, 1).flatten(1) if self.flat_obs else x.flatten(0, 1) for x in obs]
        obs = obs.reshape(self.num_rows, self.max_fan, self.num_features)
        return obs.reshape(self.num_rows, -1) if self.flat_obs else obs

    def to_padded(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Rows of whole copies in the block layout (``[E' * agents_b, fan_b, ...]`` per block) ->
        the padded layout's rows ``[E' * A, K, ...]`` (padding zero): e.g. the observations the
        RLlib module or the PettingZoo env would hand the same agents."""
        grids = [x.reshape(x.shape[0] // (b.stop - b.start), b.stop - b.start, *x.shape[1:])
                 for x, b in zip(blocks, self.blocks)]
        return self.core.ownership.blocks_to_padded(grids).flatten(0, 1)

    def _clone(self, obs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        return [x.clone() for x in obs] if self.layout == "blocks" else obs.clone()

    def _core_actions(self, actions) -> torch.Tensor | list[torch.Tensor]:
        """Actions as the core takes them, after checking their shapes: padded ``[E * A, K]`` or
        ``[E, A, K]``; blocks: per block ``[E * n, fan]`` or ``[E, n, fan]``."""
        if self.layout == "blocks":
            shapes = [(self.copies * (b.stop - b.start), b.fan) for b in self.blocks]
            if not isinstance(actions, (list, tuple)) or len(actions) != len(shapes):
                raise ValueError(f"layout='blocks' takes a list of {len(shapes)} action tensors, one per ownership "
                                 f"block, shaped {shapes} (copies * agents of the block, fan)")
            out = []
            for a, (rows, fan) in zip(actions, shapes):
                if not isinstance(a, torch.Tensor) or a.numel() != rows * fan or a.shape[-1] != fan:
                    got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                    raise ValueError(f"block actions of shape {got}; expected {(rows, fan)} (copies * agents, fan)")
                out.append(a.reshape(self.copies, rows // self.copies, fan))
            return out
        if not isinstance(actions, torch.Tensor):
            raise ValueError(f"actions must be a torch.Tensor of shape ({self.num_rows}, {self.max_fan})")
        if tuple(actions.shape) not in ((self.num_rows, self.max_fan), (self.copies, self.num_agents, self.max_fan)):
            raise ValueError(
                f"actions have shape {tuple(actions.shape)}; expected ({self.num_rows}, {self.max_fan}) = "
                f"(copies * agents, max fan) or ({self.copies}, {self.num_agents}, {self.max_fan})"
            )
        return actions.reshape(self.copies, self.num_agents, self.max_fan)

    def _per_row(self, per_copy: torch.Tensor) -> torch.Tensor:
        """``[E]`` -> ``[E * A]``: every agent of a copy shares the copy's value."""
        return per_copy.repeat_interleave(self.num_agents)

    # ---------------------------------------------------------------- reset and step
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Start a fresh episode in every copy. ``seed``: copy e is seeded ``seed + e`` (None: keep
        the copies' streams, or draw fresh seeds on the first call)."""
        if seed is not None:
            self.core.seed([int(seed) + e for e in range(self.copies)])
        elif self.core.data_gens is None:
            base = random.SystemRandom().randrange(2**31)
            self.core.seed([base + e for e in range(self.copies)])
        obs = self.core.reset()
        self._needs_reset = False
        return self._rows(obs), {"loss": self.core.loss.clone()}

    def step(self, actions: torch.Tensor):
        """Apply ``actions [E * A, K]`` (or ``[E, A, K]``) and advance every copy one step.

        Returns ``obs [E * A, ...]``, ``rewards [E * A]``, ``terminated [E * A]``,
        ``truncated [E * A]`` (bool) and ``info``: ``loss [E]`` (the inner loss after the step,
        before any autoreset), ``ended [E]`` and, when any copy ended, ``final_obs`` and
        ``final_loss``.
        """
        if self._needs_reset:
            raise ValueError("step() before reset(): call reset(seed=...) first")
        result = self.core.step(self._core_actions(actions))
        ended = result.terminated | result.truncated
        info: dict[str, torch.Tensor] = {"loss": result.loss.clone(), "ended": ended}
        obs = result.obs
        if bool(ended.any()):
            info["final_obs"] = self._rows(self._clone(obs))
            info["final_loss"] = result.loss.clone()
            info["initial_loss"] = self.core.initial_loss.clone()  # the ended episodes' loss at reset
            obs = self.core.reset(ended)  # resets the ended copies
        return (
            self._rows(obs),
            result.rewards.reshape(self.num_rows),
            self._per_row(result.terminated),
            self._per_row(result.truncated),
            info,
        )

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the episodes in flight bit for bit: the core's tensors,
        task ids and both generators of every copy (not the fault-injection stream of
        ``crash_probability``, which a restore draws afresh)."""
        core = self.core
        if core.data_gens is None:
            return {"seeded": False}
        state: dict[str, Any] = {
            "seeded": True,
            "needs_reset": self._needs_reset,
            "data_gens": [g.get_state() for g in core.data_gens],
            "noise_gens": [g.get_state() for g in core.noise_gens],
        }
        if core.is_reset:
            state["task_ids"] = list(core.task_ids)
            for name in _tensor_state(core):
                state[name] = _copy_to(getattr(core, name), "cpu")
            if core.rl:
                state["rl_state"] = {k: v.detach().cpu().clone() for k, v in core.rl_state.items()}
            for name in _LIST_STATE:
                state[name] = [x.detach().cpu().clone() for x in getattr(core, name)]
            if core.feedback is not None:  # the episodes' fixed feedback matrices (feedback features enabled)
                state["feedback"] = [b.detach().cpu().clone() for b in core.feedback.matrices]
            if core.accumulators:  # accumulator features' state (marl_net.accumulators); absent when none is on
                state["accumulators"] = {k: [x.detach().cpu().clone() for x in v] for k, v in core.accumulators.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        core = self.core
        if not state.get("seeded"):
            return
        if len(state["data_gens"]) != self.copies:
            raise ValueError(
                f"the saved env state has {len(state['data_gens'])} copies, this env {self.copies}: "
                "restore into an env built with the same copies"
            )
        if "task_ids" in state and core.rl != ("rl_state" in state):
            raise ValueError("this env state was saved for a task of the other kind (RL vs supervised): restore it "
                             "into an env built with the config it was saved with")
        if "task_ids" in state and not core.rl and "batch_index" not in state:
            raise ValueError("this env state was saved by an earlier marl_net, before each copy kept its episode's "
                             "minibatch indices: resume it with that version, or start the run afresh")
        if "last_obs" in state and isinstance(state["last_obs"], list) != (self.layout == "blocks"):
            raise ValueError(f"the saved env state holds observations in the other layout than this env's "
                             f"layout={self.layout!r}: restore into an env built with the same layout")
        core.seed(list(range(self.copies)))  # creates the generators; their states are set next
        for g, s in zip(core.data_gens, state["data_gens"]):
            g.set_state(s)
        for g, s in zip(core.noise_gens, state["noise_gens"]):
            g.set_state(s)
        # The fault-injection stream (crash_probability) is drawn afresh rather than restored: a
        # restored stream would replay the very crash the restore recovers from, every time.
        core._crash_rng.seed(random.SystemRandom().randrange(2**63))
        self._needs_reset = bool(state["needs_reset"])
        if "task_ids" in state:
            core.task_ids = list(state["task_ids"])
            for name in _tensor_state(core):
                setattr(core, name, _copy_to(state[name], self.device))
            if core.rl:
                core.rl_state = {k: v.to(self.device).clone() for k, v in state["rl_state"].items()}
            for name in _LIST_STATE:
                setattr(core, name, [x.to(self.device).clone() for x in state[name]])
            if (core.feedback_mode is not None) != ("feedback" in state):
                raise ValueError("the saved env state and this env disagree on feedback features (one draws feedback "
                                 "matrices, the other not): restore into an env built with the same observations")
            if core.feedback_mode is not None:
                core.feedback = Feedback(core.feedback_mode, [b.to(self.device).clone() for b in state["feedback"]])
            saved = state.get("accumulators", {})
            wanted = [a.name for a in core.accumulator_specs]
            if sorted(saved) != sorted(wanted):
                raise ValueError(f"the saved env state holds accumulators {sorted(saved)}, this env's observations "
                                 f"need {sorted(wanted)}: restore into an env built with the same observations")
            core.accumulators = {k: [x.to(self.device).clone() for x in saved[k]] for k in wanted}


def _copy_to(x: torch.Tensor | list[torch.Tensor], device) -> torch.Tensor | list[torch.Tensor]:
    """A detached copy of a tensor (or of a list of them: block-layout observations) on ``device``."""
    if isinstance(x, list):
        return [t.detach().to(device).clone() for t in x]
    return x.detach().to(device).clone()
