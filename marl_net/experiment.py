"""Launch configs: one YAML file per experiment, for both training paths.

A launch config has six top-level sections (all optional but ``path``)::

    path: rllib            # rllib (RLlib PPO, marl_net.rllib.algo) or fast (marl_net.fast.tune_trainable)
    env:    {task: teacher_student, layers: [8, 16, 4], ownership: outgoing, reward: global_loss, max_cycles: 20}
    policy: {hidden: 64, depth: 2}
    ppo:    {lr: 3.0e-4, gamma: 0.99, lambda_: 0.95, num_epochs: 4, minibatch_size: 256, train_batch_size: 2000}
    stop:   {training_iteration: 10}
    run:    {name: my_experiment, storage_path: ~/marl_net_results, checkpoint_frequency: 1,
             max_failures: 1, num_samples: 1, seed: 0}

``env`` holds :class:`marl_net.config.EnvConfig` arguments, ``policy`` :class:`PolicyConfig` fields
(``num_features`` follows from the env), ``ppo`` the PPO hyperparameters and resources, ``stop``
Tune's stopping criteria, ``run`` the experiment's name, storage and fault tolerance.

Any value may be ``{grid_search: [a, b, ...]}``: one launch then runs a trial per value (per
combination, for several grids), e.g. ``env.reward: {grid_search: [global_loss, difference]}``.

Overrides from the command line (``--set``) use dotted keys and YAML values::

    marl-net tune --config experiments/configs/rllib_quick.yaml --set env.reward=difference \\
        --set 'ppo.lr={grid_search: [1e-3, 3e-4]}' --set stop.training_iteration=5

Use :func:`load_launch` (file + overrides + validation) or :func:`validate_launch` on a dict.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from marl_net import yaml_numbers
from marl_net.launch_keys import is_grid

PATHS = ("rllib", "fast")
SECTIONS = ("path", "env", "policy", "ppo", "stop", "run")
RUN_KEYS = ("name", "storage_path", "checkpoint_frequency", "checkpoint_at_end", "max_failures", "num_samples",
            "seed", "keep_checkpoints_num", "calibrate_features")
DEFAULT_RUN: dict[str, Any] = {
    "name": None,
    "storage_path": "~/marl_net_results",
    "checkpoint_frequency": 1,
    "checkpoint_at_end": True,
    "max_failures": 1,
    "num_samples": 1,
    "seed": 0,
    "keep_checkpoints_num": None,
    "calibrate_features": True,
}


def _unknown(kind: str, key: str, valid: Iterable[str]) -> ValueError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"valid: {valid}"
    return ValueError(f"unknown {kind} {key!r}; {hint}")


def _check_grids(section: str, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, Mapping) and "grid_search" in value:
            if set(value) != {"grid_search"} or not isinstance(value["grid_search"], list) or not value["grid_search"]:
                raise ValueError(f"{section}.{key}: write a grid as {{grid_search: [value, ...]}} with a non-empty list")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"env.reward=difference"`` -> (["env", "reward"], "difference"); the value is parsed as YAML."""
    if "=" not in item:
        raise ValueError(f"--set {item!r}: write key=value, e.g. --set env.reward=difference")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"--set {item!r}: the key {key!r} has an empty part; write section.name=value")
    return parts, yaml_numbers.load(raw)


def apply_overrides(launch: dict, overrides: Iterable[str]) -> dict:
    """A copy of ``launch`` with every ``key.sub=value`` override applied."""
    launch = copy.deepcopy(launch)
    for item in overrides or ():
        parts, value = parse_override(item)
        if parts[0] not in SECTIONS:
            raise _unknown("top-level key in --set", parts[0], SECTIONS)
        node = launch
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"--set {item!r}: {part!r} is not a section (it holds {child!r})")
            node = child
        node[parts[-1]] = value
    return launch


def validate_launch(launch: Mapping[str, Any]) -> dict:
    """Check a launch dict and return it with defaults filled in (``run`` completed).

    Raises ValueError naming the fix for unknown top-level keys, an unknown ``path``, sections
    that are not mappings, malformed grids, and (for every combination of grid values) a name or
    a value of any section that the chosen path refuses: env, policy and PPO settings, stop
    criteria (numbers; misspelled metric names), run settings. Nothing is left for Tune to find.
    """
    if not isinstance(launch, Mapping):
        raise ValueError(f"a launch config is a mapping with keys {list(SECTIONS)}, got {type(launch).__name__}")
    for key in launch:
        if key not in SECTIONS:
            raise _unknown("top-level key", key, SECTIONS)
    path = launch.get("path")
    if path not in PATHS:
        raise ValueError(f"path={path!r} is unknown; set path: to one of {list(PATHS)}")
    out: dict[str, Any] = {"path": path}
    for section in SECTIONS[1:]:
        value = launch.get(section) or {}
        if not isinstance(value, Mapping):
            raise ValueError(f"section {section!r} must be a mapping of settings, got {value!r}")
        _check_grids(section, value)
        out[section] = dict(value)
    for key in out["run"]:
        if key not in RUN_KEYS:
            raise _unknown("run setting", key, RUN_KEYS)
    out["run"] = {**DEFAULT_RUN, **out["run"]}
    _check_env_and_policy(out)
    _check_ppo(out)
    _check_stop(out["stop"])
    for combo in _combinations(out["run"]):
        check_run(combo)
    return out


# Result keys Tune fills in for every trainable (a stop criterion may name them on either path).
TUNE_RESULT_KEYS = ("training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore",
                    "iterations_since_restore", "timesteps_total", "timesteps_since_restore")
# Metrics, beyond those, that the fast path or the RLlib path reports (a misspelling of one is refused;
# other names pass, as either path reports more).
STOP_METRICS = ("episode_return_mean", "inner_loss_final", "inner_loss_improvement", "inner_diverged",
                "num_agent_steps_sampled_lifetime", "num_env_steps_sampled_lifetime",
                "env_runners/episode_return_mean", "env_runners/inner_loss_final", "env_runners/inner_loss_improvement")


def _section_error(section: str, exc: Exception) -> ValueError:
    return ValueError(f"{section} section: {exc.args[0] if exc.args else exc}")


def _check_ppo(launch: Mapping[str, Any]) -> None:
    """The ``ppo`` section's names and values, for every combination of grid values."""
    try:
        if launch["path"] == "rllib":
            from marl_net.rllib.algo import check_ppo_keys, check_ppo_values

            check_ppo_keys(launch["ppo"])
            for combo in _combinations(launch["ppo"]):
                check_ppo_values(combo)
        else:  # refuse a misspelled or out-of-range fast-path setting here, not inside every trial
            from marl_net.fast.ppo import FastPPOConfig

            for combo in _combinations(launch["ppo"]):
                FastPPOConfig.from_kwargs(**combo)
    except (ValueError, TypeError) as exc:
        raise _section_error("ppo", exc) from exc


def _check_stop(stop: Mapping[str, Any]) -> None:
    """Tune's stop criteria: metric names (misspellings of known ones refused) and numeric limits."""
    known = TUNE_RESULT_KEYS + STOP_METRICS
    for key, value in stop.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"stop section: {key!r} is not a metric name; write e.g. stop: {{training_iteration: 10}}")
        if key not in known and difflib.get_close_matches(key, known, n=1, cutoff=0.85):
            raise _unknown("stop criterion", key, known)
        for choice in value["grid_search"] if is_grid(value) else [value]:
            if isinstance(choice, bool) or not isinstance(choice, (int, float)) or choice != choice:
                raise ValueError(f"stop.{key}={choice!r} must be a number (unquoted), e.g. stop.{key}: 10")
            if key in ("training_iteration", "timesteps_total") and (not isinstance(choice, int) or choice < 1):
                raise ValueError(f"stop.{key}={choice!r} must be a positive integer, e.g. stop.{key}: 10")


def check_run(run: Mapping[str, Any]) -> None:
    """Values of a completed ``run`` section (no grids left), ValueError naming the fix."""
    from marl_net.validation import check_value

    if run["name"] is not None and (not isinstance(run["name"], str) or not run["name"] or "/" in run["name"]):
        raise ValueError(f"run.name={run['name']!r} must be a non-empty name without '/', e.g. run.name: my_experiment")
    if not isinstance(run["storage_path"], str) or not run["storage_path"]:
        raise ValueError(f"run.storage_path={run['storage_path']!r} must be a folder, e.g. ~/marl_net_results")
    for key in ("checkpoint_at_end", "calibrate_features"):
        check_value(f"run.{key}", run[key], bool)
    for key, low in (("checkpoint_frequency", 0), ("max_failures", -1), ("num_samples", 1), ("seed", 0)):
        if run[key] is None and key in ("checkpoint_frequency", "seed"):
            continue  # no checkpoints; no fixed seed
        check_value(f"run.{key}", run[key], int)
        if run[key] < low:
            raise ValueError(f"run.{key}={run[key]!r} must be at least {low}"
                             + (" (-1: retry without limit)" if key == "max_failures" else ""))
    keep = run["keep_checkpoints_num"]
    if keep is not None and (check_value("run.keep_checkpoints_num", keep, int) < 1):
        raise ValueError(f"run.keep_checkpoints_num={keep!r} must be a positive integer, or null to keep all")


def _combinations(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    combos: list[dict[str, Any]] = [{}]
    for key, value in section.items():
        choices = value["grid_search"] if is_grid(value) else [value]
        combos = [{**c, key: v} for c in combos for v in choices]
    return combos


def _check_env_and_policy(launch: Mapping[str, Any]) -> None:
    from marl_net.config import EnvConfig
    from marl_net.policies.synapse_policy import PolicyConfig

    for env in _combinations(launch["env"]):
        try:
            EnvConfig.from_kwargs(**env)
        except (ValueError, TypeError) as exc:
            raise _section_error("env", exc) from exc
    names = [f.name for f in dataclasses.fields(PolicyConfig) if f.name != "num_features"]
    for key in launch["policy"]:
        if key not in names:
            raise _unknown("policy setting (num_features follows from the env)", key, names)
    for policy in _combinations(launch["policy"]):
        try:
            PolicyConfig(num_features=2, **policy)  # num_features follows from the env: any valid one here
        except (ValueError, TypeError) as exc:
            raise _section_error("policy", exc) from exc


def load_launch(path: str | os.PathLike, overrides: Iterable[str] = ()) -> dict:
    """Read a YAML launch config (numbers as numbers: ``marl_net.yaml_numbers``), apply ``--set``
    overrides and validate it."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"launch config {str(file)!r} does not exist; pass a YAML file, e.g. "
                                "experiments/configs/fast_quick.yaml")
    with open(file) as fh:
        try:
            launch = yaml_numbers.load(fh) or {}
        except yaml_numbers.yaml.YAMLError as exc:
            raise ValueError(f"{file} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(launch, dict):
        raise ValueError(f"{file}: a launch config is a YAML mapping with keys {list(SECTIONS)}")
    launch = apply_overrides(launch, overrides)
    if not (launch.get("run") or {}).get("name"):
        launch.setdefault("run", {})["name"] = file.stem
    return validate_launch(launch)


def to_tune_grids(section: Mapping[str, Any]) -> dict[str, Any]:
    """``section`` with every ``{grid_search: [...]}`` turned into ``tune.grid_search([...])``."""
    from ray import tune

    return {k: (tune.grid_search(list(v["grid_search"])) if is_grid(v) else v) for k, v in section.items()}
