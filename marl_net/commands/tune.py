"""``marl-net tune``: launch a Tune experiment from a YAML launch config (RLlib path or fast path).

    marl-net tune --config experiments/configs/rllib_quick.yaml
    marl-net tune --config experiments/configs/rllib_reward_schemes.yaml --set stop.training_iteration=20
    marl-net tune --config experiments/configs/rllib_quick.yaml --address 10.0.0.10:6379   # join an existing cluster
    marl-net tune --config experiments/configs/rllib_quick.yaml --resume   # continue an interrupted run
    marl-net tune --config experiments/configs/rllib_quick.yaml --verbose 0   # only the final per-trial table

Without ``--address`` (and without ``RAY_ADDRESS``) a local Ray instance is started in this process
with every CPU of the machine; with either, the launch joins that existing cluster. Ray 2.59+
turns on token authentication for local clusters: the local instance writes its token to
``~/.ray/auth_token``; to join a cluster, have its token in ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` (``ray get-auth-token`` on the head prints it).

``path: rllib`` runs ``tune.Tuner(PPO, param_space=...)`` with the config of
``marl_net.rllib.algo.build_ppo_config``; ``path: fast`` runs the fast path's function trainable
``marl_net.fast.tune_trainable.train_fast`` on the same launch dict. Both write per-trial results,
TensorBoard event files and checkpoints under ``run.storage_path/run.name``. The command prints
one line per trial (its settings that were grid-searched and its inner loss at the end of an
episode) and exits non-zero if a trial errored.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

HELP = "launch a Tune experiment from a YAML config (RLlib path or fast path)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML launch config, e.g. experiments/configs/rllib_quick.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (YAML), e.g. --set env.reward=difference; repeatable")
    parser.add_argument("--address", default=None,
                        help="address of an existing Ray cluster (default: $RAY_ADDRESS, else a local in-process Ray)")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                        help="Tune's console output: 0 silent, 1 status and trial configs (default), 2 every result")
    parser.add_argument("--resume", action="store_true",
                        help="restore the experiment at storage_path/name with Tuner.restore and finish it")


def init_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Connect to ``address`` (or ``$RAY_ADDRESS``), or start a local Ray in this process with every
    CPU (``num_cpus``: fewer). Does nothing when Ray is already initialized. ``log_to_driver=False``
    keeps the workers' own log lines off this process's console (a trial's error still reaches
    Tune's results)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        try:
            ray.init(address=address, log_to_driver=log_to_driver)
        except Exception as exc:  # most often: auth token missing or wrong
            if "authentication" in str(exc).lower() or "token" in str(exc).lower():
                raise RuntimeError(
                    f"could not join the Ray cluster at {address}: {exc}. The cluster uses token authentication: "
                    "export RAY_AUTH_TOKEN=<the head's `ray get-auth-token`> or RAY_AUTH_TOKEN_PATH=<file>") from exc
            raise
    else:
        # "local": a new instance even if `ray start` left an address in /tmp/ray/ray_current_cluster
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=log_to_driver)


def experiment_path(launch: Mapping[str, Any]) -> Path:
    run = launch["run"]
    return Path(os.path.expanduser(str(run["storage_path"]))).absolute() / str(run["name"])


def make_tuner(launch: Mapping[str, Any], verbose: int = 1):
    """The ``tune.Tuner`` of a validated launch dict (see ``marl_net.experiment``)."""
    from ray import tune

    run = launch["run"]
    run_config = tune.RunConfig(
        name=str(run["name"]),
        storage_path=str(experiment_path(launch).parent),
        stop=dict(launch["stop"]) or None,
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=int(run["checkpoint_frequency"] or 0),
            checkpoint_at_end=bool(run["checkpoint_at_end"]),
            num_to_keep=run["keep_checkpoints_num"],
        ),
        failure_config=tune.FailureConfig(max_failures=int(run["max_failures"])),
        verbose=verbose,
    )
    tune_config = tune.TuneConfig(num_samples=int(run["num_samples"]))
    trainable, space = trainable_and_space(launch)
    return tune.Tuner(trainable, param_space=space, run_config=run_config, tune_config=tune_config)


def trainable_and_space(launch: Mapping[str, Any]):
    """(trainable, param_space) of the launch's path."""
    if launch["path"] == "rllib":
        from ray.rllib.algorithms.ppo import PPO

        from marl_net.rllib.algo import param_space

        return PPO, param_space(launch)
    from marl_net.experiment import to_tune_grids

    try:
        from marl_net.fast.tune_trainable import train_fast
    except ModuleNotFoundError as exc:
        raise ValueError("path: fast needs marl_net.fast.tune_trainable, which this build lacks; use path: rllib") from exc
    from ray import tune

    space = {section: to_tune_grids(launch[section]) for section in ("env", "policy", "ppo", "run")}
    space["stop"] = dict(launch["stop"])
    # a trial holds a CPU per worker process of its trainer (ppo.workers, marl_net.fast.data_parallel)
    return tune.with_resources(train_fast, _fast_trial_resources), space


def _fast_trial_resources(config: Mapping[str, Any]) -> dict[str, int]:
    return {"cpu": int((config.get("ppo") or {}).get("workers", 1))}


def restore_tuner(launch: Mapping[str, Any]):
    """``Tuner.restore`` of the launch's experiment directory: unfinished and errored trials go on."""
    from ray import tune

    path = experiment_path(launch)
    if not tune.Tuner.can_restore(str(path)):
        raise ValueError(f"nothing to resume at {path}: run the launch without --resume first")
    trainable, space = trainable_and_space(launch)
    return tune.Tuner.restore(str(path), trainable=trainable, param_space=space, resume_errored=True)


def run_launch(launch: Mapping[str, Any], resume: bool = False, verbose: int = 1):
    """Fit a validated launch (Ray must be initialized) and return its ``ResultGrid``; raise
    RuntimeError if a trial errored. ``verbose`` is Tune's console verbosity (a resumed run keeps
    the one it was started with)."""
    tuner = restore_tuner(launch) if resume else make_tuner(launch, verbose)
    results = tuner.fit()
    if results.errors:
        raise RuntimeError(f"{len(results.errors)} trial(s) errored: {results.errors[0]!r}")
    return results


def summarize(launch: Mapping[str, Any], results) -> list[dict[str, Any]]:
    """One row per trial: the grid-searched settings, the iterations run, the inner loss at the end
    of an episode and its improvement over the episode."""
    from marl_net.launch_keys import is_grid

    grids = [(s, k) for s in ("env", "ppo") for k, v in launch[s].items() if is_grid(v)]
    rows = []
    for result in results:
        metrics, config = result.metrics or {}, result.config or {}
        env_config = config.get("env_config", config.get("env", {})) or {}
        row = {f"{s}.{k}": (env_config.get(k) if s == "env" else config.get(k.rstrip("_"), (config.get("ppo") or {}).get(k)))
               for s, k in grids}
        runners = metrics.get("env_runners", {}) if isinstance(metrics.get("env_runners"), dict) else {}
        row.update(
            iterations=metrics.get("training_iteration"),
            inner_loss_final=runners.get("inner_loss_final", metrics.get("inner_loss_final")),
            inner_loss_improvement=runners.get("inner_loss_improvement", metrics.get("inner_loss_improvement")),
            path=result.path,
        )
        rows.append(row)
    return rows


def main(args) -> int:
    from marl_net.experiment import load_launch

    launch = load_launch(args.config, args.overrides)
    init_ray(args.address)
    try:
        results = run_launch(launch, resume=args.resume, verbose=args.verbose)
    except RuntimeError as exc:
        print(f"marl-net tune: {exc}", file=sys.stderr)
        return 1
    print(f"experiment: {experiment_path(launch)}")
    for row in summarize(launch, results):
        print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
    return 0


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
