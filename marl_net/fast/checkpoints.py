"""Find and load what the fast path saved (``FastPPO.save``: ``fast_ppo.pt``), for evaluation.

A fast-path Tune trial directory holds ``checkpoint_NNNNNN/fast_ppo.pt``; :func:`find` accepts
the trial directory (its latest checkpoint), a checkpoint directory or the file itself, and
:func:`load_policy` returns the plain-torch ``SynapsePolicy`` and the env config it trained on,
as ``marl_net.rllib.checkpoints.load_policy`` does for RLlib checkpoints. A checkpoint whose
saved policy configuration does not fit its saved weights, or whose saved env configuration is
not a valid ``EnvConfig`` here, is refused naming the keys (the file is a pickle: load only
checkpoints you trust).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "fast_ppo.pt"  # FastPPO.CHECKPOINT_FILE


def find(path: str | Path) -> Path | None:
    """The ``fast_ppo.pt`` of ``path`` (a file, a checkpoint directory, or a trial directory: its
    latest checkpoint), or None if ``path`` holds none."""
    path = Path(path).expanduser().absolute()
    if path.is_file() and path.name == CHECKPOINT_FILE:
        return path
    if (path / CHECKPOINT_FILE).is_file():
        return path / CHECKPOINT_FILE
    checkpoints = sorted(c for c in path.glob("checkpoint_*") if (c / CHECKPOINT_FILE).is_file())
    return checkpoints[-1] / CHECKPOINT_FILE if checkpoints else None


def load_policy(file: str | Path) -> tuple[Any, dict]:
    """``(SynapsePolicy, env_config)`` of a fast-path checkpoint file, in eval mode (a
    ``RecurrentSynapsePolicy`` when it was trained with ``memory="gru"``)."""
    from marl_net.config import EnvConfig
    from marl_net.policies.recurrent_policy import make_policy
    from marl_net.policies.synapse_policy import PolicyConfig

    state = torch.load(file, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "policy" not in state or "policy_config" not in state:
        raise ValueError(f"{str(file)!r} is not a fast-path checkpoint: pass a directory written by FastPPO.save")
    if "env_config" not in state:
        raise ValueError(f"{str(file)!r} was saved by an earlier marl_net, without its env config: evaluate it "
                         "with that version")
    try:
        EnvConfig.from_kwargs(**state["env_config"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{str(file)!r}: its env config is not valid here ({exc}); evaluate it with the "
                         "marl_net that wrote it") from exc
    policy = make_policy(PolicyConfig(**state["policy_config"]))
    expected, saved = policy.state_dict(), state["policy"]
    wrong = sorted(k for k in set(expected) | set(saved)
                   if k not in expected or k not in saved or expected[k].shape != saved[k].shape)
    if wrong:
        raise ValueError(f"{str(file)!r}: its policy configuration {state['policy_config']} does not fit its saved "
                         f"weights (keys {wrong}); the checkpoint is damaged or from another marl_net")
    policy.load_state_dict(saved)
    return policy.eval(), dict(state["env_config"])
