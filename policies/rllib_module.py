"""The RLlib face of the shared per-neuron actor-critic (new API stack, ray 2.60).

:class:`SynapseRLModule` is a ``TorchRLModule`` with ``ValueFunctionAPI`` that holds one
:class:`~marl_net.policies.synapse_policy.SynapsePolicy` as ``self.policy`` (so its state-dict
keys are ``policy.*``: a rule trained on the fast path loads here with
``module.policy.load_state_dict(fast_policy.state_dict())``, and back).

Action distribution: :class:`MaskedDiagGaussian`, RLlib's diagonal Gaussian restricted to the
agent's real synapse slots (its inputs are ``concat(mean, log_std, mask)``): padding slots are
sampled, and ignored by the env, but never enter log-probabilities, entropies or KLs, exactly as
on the fast path (both use ``masked_log_prob`` / ``masked_entropy``).

The policy's ``num_features`` is derived from the spaces: observations are a flattened
``[K, F + 1]`` table and actions have K entries, so ``F + 1 = obs_dim / K``. The module therefore
needs no environment-specific model config, and a grid over observation features or network sizes
in one Tune launch just works. ``model_config`` takes the other :class:`PolicyConfig` fields
(``hidden``, ``depth``, ``init_log_std``, ``action_gain``).

One module serves every neuron: :func:`shared_module_spec` builds the ``MultiRLModuleSpec`` with
the single module id :data:`SHARED_MODULE_ID`, and :func:`policy_mapping_fn` maps every agent to it.

Memory: with ``model_config["memory"] == "gru"`` the module holds a
:class:`~marl_net.policies.recurrent_policy.RecurrentSynapsePolicy` and is stateful on RLlib's
terms: :meth:`SynapseRLModule.get_initial_state` returns ``{"h": zeros [K, memory_size]}`` (one GRU
state per synapse slot; with ``"gru_neuron"`` a
:class:`~marl_net.policies.neuron_memory.NeuronMemoryPolicy` and ``{"h": zeros [memory_size]}``,
one per neuron), the forward passes read ``Columns.STATE_IN`` and write
``Columns.STATE_OUT``, and observations arrive as ``[B, T, K * (F + 1)]`` sequences (``T = 1`` when
acting). ``model_config["max_seq_len"]`` must equal the env's ``max_cycles`` so that one sequence
is one inner episode (:func:`shared_module_spec` sets it; ``marl_net.rllib.algo`` passes the
env's). RLlib starts every episode from the initial state, i.e. zero at every reset of the inner
network, and every agent acts at every step of the env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchDeterministic, TorchDiagGaussian
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule

from marl_net.policies.recurrent_policy import make_policy
from marl_net.policies.synapse_policy import (
    POLICY_SETTINGS,
    PolicyConfig,
    check_policy_settings,
    masked_entropy,
    masked_log_prob,
)

SHARED_MODULE_ID = "shared_synapse_policy"


def policy_config_from_spaces(observation_space: gym.Space, action_space: gym.Space, model_config: dict | None) -> PolicyConfig:
    """The :class:`PolicyConfig` for flat ``[K * (F + 1)]`` observations and ``[K]`` actions."""
    if not isinstance(observation_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"SynapseRLModule needs Box spaces, got {observation_space} and {action_space}")
    obs_dim, k = int(observation_space.shape[-1]), int(action_space.shape[-1])
    if obs_dim % k:
        raise ValueError(f"observation width {obs_dim} is not a multiple of the action width {k}; "
                         "use the network_weights_v0 spaces (flattened [K, F + 1] observations, K actions)")
    # RLlib adds its own defaults to model_config (e.g. PPO's vf_share_layers): take only ours.
    # Misspelled settings are refused earlier, by shared_module_spec.
    kwargs = {k: v for k, v in (model_config or {}).items() if k in POLICY_SETTINGS}
    return PolicyConfig(num_features=obs_dim // k, **kwargs)


class MaskedDiagGaussian(TorchDiagGaussian):
    """A diagonal Gaussian over the real synapse slots: inputs ``concat(mean, log_std, mask)``."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor):
        super().__init__(loc=loc, scale=scale)
        self.mask = mask

    def logp(self, value: torch.Tensor) -> torch.Tensor:
        return masked_log_prob(value, self.loc, self._dist.scale.log(), self.mask)

    def entropy(self) -> torch.Tensor:
        return masked_entropy(self._dist.scale.log(), self.mask)

    def kl(self, other: "MaskedDiagGaussian") -> torch.Tensor:
        return (torch.distributions.kl.kl_divergence(self._dist, other._dist) * self.mask).sum(-1)

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        return int(space.shape[-1]) * 3

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> "MaskedDiagGaussian":
        loc, log_std, mask = logits.chunk(3, dim=-1)
        return cls(loc=loc, scale=log_std.exp(), mask=mask)

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=self.loc)


class SynapseRLModule(TorchRLModule, ValueFunctionAPI):
    """``SynapsePolicy`` (or, with ``memory="gru"``, ``RecurrentSynapsePolicy``) as an RLlib RLModule:
    Gaussian actions, a value head for PPO's GAE, and the GRU state through ``STATE_IN`` /
    ``STATE_OUT`` when recurrent."""

    def setup(self):
        model_config = self.model_config if isinstance(self.model_config, dict) else {}
        self.policy = make_policy(policy_config_from_spaces(self.observation_space, self.action_space, model_config))
        if self.policy.recurrent and not model_config.get("max_seq_len"):
            raise ValueError("a recurrent SynapseRLModule needs model_config['max_seq_len'] = the env's max_cycles "
                             "(one sequence per inner episode): build the spec with shared_module_spec(policy, max_cycles)")
        self.action_dist_cls = MaskedDiagGaussian

    def get_initial_state(self) -> dict:
        """``{}`` (feed-forward: not stateful) or ``{"h": zeros [K, memory_size]}`` (``memory="gru"``)
        or ``{"h": zeros [memory_size]}`` (``"gru_neuron"``)."""
        if not self.policy.recurrent:
            return {}
        k = int(self.action_space.shape[-1])
        return {"h": np.zeros(self.policy.state_shape(k), dtype=np.float32)}

    def _dist_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """-> the distribution inputs ``[..., 3K]``, values ``[...]`` and (recurrent) the state out."""
        obs = batch[Columns.OBS]
        if not self.policy.recurrent:
            mean, log_std, value = self.policy(obs)
            return torch.cat([mean, log_std, self.policy.split(obs)[1]], dim=-1), value, {}
        # [B, T, K * (F + 1)] sequences from STATE_IN [B, K, H]; the policy unrolls time-major
        mean, log_std, value, state = self.policy.unroll(obs.transpose(0, 1), batch[Columns.STATE_IN]["h"])
        mean, log_std, value = mean.transpose(0, 1), log_std.transpose(0, 1), value.transpose(0, 1)
        return torch.cat([mean, log_std, self.policy.split(obs)[1]], dim=-1), value, {Columns.STATE_OUT: {"h": state}}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        inputs, _, state = self._dist_inputs(batch)
        return {Columns.ACTION_DIST_INPUTS: inputs, **state}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        inputs, value, state = self._dist_inputs(batch)
        # The value computed in the same pass; PPO's learner reuses it instead of a second pass.
        return {Columns.ACTION_DIST_INPUTS: inputs, Columns.EMBEDDINGS: value, **state}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is not None:
            return embeddings
        if self.policy.recurrent:
            return self._dist_inputs(batch)[1]
        return self.policy.value(batch[Columns.OBS])

    def action_means(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (Gaussian means ``[N, K]``) for observations ``[N, K * (F + 1)]``
        (feed-forward; a recurrent policy's means need its state: use ``marl_net.evaluation.policy_means``)."""
        if self.policy.recurrent:
            raise ValueError("action_means has no state to read for a recurrent module: step "
                             "marl_net.evaluation.policy_means(module.policy) through the episode instead")
        with torch.no_grad():
            return self.policy(obs)[0]


def policy_mapping_fn(agent_id, episode=None, **kwargs) -> str:
    """Every neuron uses the one shared module."""
    return SHARED_MODULE_ID


def shared_module_spec(policy: dict | None = None, max_cycles: int | None = None) -> MultiRLModuleSpec:
    """A ``MultiRLModuleSpec`` holding one :class:`SynapseRLModule` shared by all neurons.

    ``policy``: :class:`PolicyConfig` fields other than ``num_features`` (e.g. ``{"hidden": 64}``).
    ``max_cycles``: the env's inner episode length; a recurrent policy (``memory="gru"``) needs it
    (its ``max_seq_len``: one sequence per inner episode).
    """
    model_config = dict(policy or {})
    check_policy_settings(model_config)
    if model_config.get("memory", "none") != "none":
        if max_cycles is None:
            raise ValueError("a recurrent policy (memory='gru') needs the env's max_cycles: "
                             "shared_module_spec(policy, max_cycles=...)")
        model_config["max_seq_len"] = int(max_cycles)
    return MultiRLModuleSpec(
        rl_module_specs={SHARED_MODULE_ID: RLModuleSpec(module_class=SynapseRLModule, model_config=model_config)}
    )
