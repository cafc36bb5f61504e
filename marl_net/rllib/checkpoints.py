"""Find and load what an RLlib launch saved: the shared module alone, for evaluation.

A Tune trial directory holds ``params.json`` (the trial's config, including ``env_config``) and
``checkpoint_NNNNNN/`` algorithm checkpoints; the shared module sits at
``checkpoint_NNNNNN/learner_group/learner/rl_module/<SHARED_MODULE_ID>``. :func:`load_policy`
accepts any of the three (trial dir: its latest checkpoint) and returns the plain-torch
``SynapsePolicy`` plus the env config it trained on (``{}`` if unknown). No Ray instance is
needed (the checkpoint's pickles are read, so load only checkpoints you trust).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from marl_net.policies.rllib_module import SHARED_MODULE_ID

MODULE_SUBDIR = Path("learner_group") / "learner" / "rl_module" / SHARED_MODULE_ID


def module_dir(path: str | Path) -> Path:
    """The shared module's directory inside a trial dir, an algorithm checkpoint or a module dir."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist: pass a Tune trial directory or a "
                                "checkpoint_NNNNNN directory in it")
    if (path / "module_state.pkl").exists() and (path / "class_and_ctor_args.pkl").exists() and path.name == SHARED_MODULE_ID:
        return path
    if (path / MODULE_SUBDIR).exists():
        return path / MODULE_SUBDIR
    checkpoints = sorted(path.glob("checkpoint_*"))
    if checkpoints and (checkpoints[-1] / MODULE_SUBDIR).exists():
        return checkpoints[-1] / MODULE_SUBDIR
    raise ValueError(f"{str(path)!r} is not an RLlib checkpoint of marl_net: pass a trial directory, a "
                     f"checkpoint_NNNNNN directory, or its {MODULE_SUBDIR} subdirectory")


def trained_env_config(path: str | Path) -> dict:
    """The ``env_config`` a checkpoint trained on: from the algorithm checkpoint's saved config
    (``class_and_ctor_args.pkl``), else from the Tune trial's ``params.json``; ``{}`` if neither."""
    path = Path(path).expanduser().absolute()
    for parent in [path, *path.parents][:7]:
        ctor = parent / "class_and_ctor_args.pkl"
        if (parent / "rllib_checkpoint.json").exists() and ctor.exists():
            with open(ctor, "rb") as fh:
                args = pickle.load(fh).get("ctor_args_and_kwargs", ((), {}))[0]
            config = args[0] if args else {}
            env_config = config.get("env_config") if isinstance(config, dict) else getattr(config, "env_config", None)
            if env_config is not None:
                return dict(env_config)
        params = parent / "params.json"
        if params.exists():
            with open(params) as fh:
                return dict(json.load(fh).get("env_config") or {})
    return {}


def load_module(path: str | Path):
    """The ``SynapseRLModule`` saved under ``path`` (``RLModule.from_checkpoint``)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    return RLModule.from_checkpoint(str(module_dir(path)))


def load_policy(path: str | Path):
    """``(SynapsePolicy, env_config)`` of a checkpoint, in eval mode."""
    module = load_module(path)
    policy = module.policy.eval()
    return policy, trained_env_config(path)
