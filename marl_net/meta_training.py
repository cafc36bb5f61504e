"""Meta-training of the rule ladder: one learned rule per level, fast-path PPO, ONE Tune launch.

Every level (times ``Budget.restarts``) is a trial of one ``tune.Tuner`` over
:func:`train_level`, which runs the fast path's function trainable
(``marl_net.fast.tune_trainable.train_fast``) on the level's launch dict (:func:`level_launch`):
the meta-training env :data:`TRAIN_ENV` with the level's observations and env options, the
policy :data:`POLICY` and PPO :data:`PPO`, each overridable with ``--set section.key=value``.
``--address`` (or ``$RAY_ADDRESS``) runs the same launch on a Ray cluster; locally, Ray starts
in-process with every CPU and Tune runs as many trials at once as there are CPUs.

Trials write TensorBoard events to ``RUN_DIR/tune/<trial>/fast_ppo/`` and a checkpoint every
:data:`CHECKPOINT_EVERY` iterations and at the end. With restarts, the restart whose policy has
the lowest mean final loss on train-split networks is kept (never held-out ones). The kept
policies are saved as ``RUN_DIR/policies/LEVEL.pt`` (:func:`save_policy`, read by
:func:`load_policy` and ``marl-net eval``). :func:`launch_trials` is the Tune launch itself, shared
with the RL family (``marl_net.rl_job``, a trial per trained preset).

Memory: the levels run the feed-forward per-synapse policy with the accumulator features their
definitions choose (``marl_net.levels``; results.json's ``memory`` names both, e.g. ``none +
accumulators ema0.9[gradient]``); ``--set policy.memory=gru_neuron`` (a GRU
state per neuron, the cheaper memory) or ``=gru`` (one per synapse row) switches every level,
``--set feedback.policy.memory=gru_neuron`` one level (:func:`job_settings`).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import torch

from marl_net.budgets import Budget
from marl_net.config import EnvConfig
from marl_net.levels import LEVELS

TRAIN_ENV = dict(task="teacher_student", layers=(8, 16, 4), ownership="outgoing", max_cycles=50, batch_size=32,
                 action_scale=0.2, reward="difference", reward_unit="percent")
POLICY = dict(hidden=32, depth=2, init_log_std=-2.0)
PPO = dict(lr=1e-3, gamma=0.0, lambda_=0.95, num_epochs=4, minibatch_size=4096, entropy_coeff=0.0, torch_threads=1)
SECTIONS = {"env": TRAIN_ENV, "policy": POLICY, "ppo": PPO}
# Per-level settings on top of those (sections as above). Memory (the recurrent policy or EMA
# accumulator features) would go here, per level, where a train-split comparison shows it helps;
# none is set yet: every level runs the feed-forward policy on its observation set.
LEVEL_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {}
CHECKPOINT_EVERY = 50  # iterations between a trial's checkpoints (a restarted trial resumes from the last)


def job_settings(level: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Level ``level``'s ``{"env": ..., "policy": ..., "ppo": ...}``: the defaults, the level's
    observations and env options and :data:`LEVEL_SETTINGS`, then ``overrides``: the same
    sections for every level, and ``overrides[LEVEL]`` (the same sections again) for one level
    (``--set gradient.policy.hidden=64``)."""
    overrides = dict(overrides or {})
    for section, value in overrides.items():
        if section in LEVELS:
            unknown = [k for k in (value or {}) if k not in SECTIONS]
            if unknown:
                raise ValueError(f"override section {section}.{unknown[0]} is unknown; choose from {list(SECTIONS)} "
                                 f"(e.g. --set {section}.policy.hidden=64)")
        elif section not in SECTIONS:
            raise ValueError(f"override section {section!r} is unknown; choose from {list(SECTIONS)} or a level "
                             f"{list(LEVELS)} (e.g. --set env.action_scale=0.1, --set gradient.policy.hidden=64)")
    lv = LEVELS[level]
    base = {"env": {**TRAIN_ENV, "observations": lv.observations, **lv.env_options}, "policy": POLICY, "ppo": PPO}
    mine = overrides.get(level) or {}
    settings = {name: {**defaults, **LEVEL_SETTINGS.get(level, {}).get(name, {}), **(overrides.get(name) or {}),
                       **(mine.get(name) or {})} for name, defaults in base.items()}
    if settings["env"].get("base_update") is None:  # no base (--set env.base_update=null): nor its correction's form
        given = {**(overrides.get("env") or {}), **(mine.get("env") or {})}
        for key in (k for k in lv.correction if k not in given):  # back to the job's value, else the env's default
            if key in TRAIN_ENV:
                settings["env"][key] = TRAIN_ENV[key]
            else:
                settings["env"].pop(key)
    return settings


def train_config(level: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> EnvConfig:
    """Level ``level``'s meta-training env."""
    return EnvConfig.from_kwargs(**job_settings(level, overrides)["env"])


def check_settings(levels: Sequence[str], overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Raise ValueError, naming the fix, on an override the env, the policy or PPO refuses."""
    from marl_net.fast.ppo import FastPPOConfig
    from marl_net.policies.synapse_policy import PolicyConfig, check_policy_settings

    checks = {"env": lambda s: EnvConfig.from_kwargs(**s), "ppo": lambda s: FastPPOConfig.from_kwargs(**s),
              "policy": lambda s: (check_policy_settings(s), PolicyConfig(num_features=2, **s))}
    for level in levels:
        settings = job_settings(level, overrides)
        for section, check in checks.items():
            try:
                check(settings[section])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{section} setting: {exc.args[0] if exc.args else exc} (level {level})") from exc


def restart_seed(seed: int, restart: int) -> int:
    """The meta-training seed of restart ``restart`` of the job seeded ``seed`` (restart 0: ``seed``)."""
    from marl_net.seeding import seed_from

    return seed if restart == 0 else seed_from(seed, 100 + restart)


def base_rates(levels: Sequence[str], budget: Budget, seed: int,
               overrides: Mapping[str, Mapping[str, Any]] | None = None, device: str = "cpu") -> dict[str, dict | None]:
    """Each level's base for meta-training (``heldout.over_tuned_base``'s record: rule, lr, factor,
    base_rate, action_scale): its base rule (``marl_net.base_rules``) at the step size tuned on the
    train split of its meta-training env times the level's ``base_factor``, with the held-out
    suite's tuning networks and grid (``marl_net.heldout``); None where the level runs over no hand
    rule or ``--set env.base_rate=...`` fixes the rate. results.json keeps it as ``levels[LEVEL]["base"]``."""
    from marl_net.heldout import over_tuned_base, tuning_seeds

    rates: dict[str, dict | None] = {}
    for level in levels:
        env = job_settings(level, overrides)["env"]
        if "base_rate" in env:
            rates[level] = None
            continue
        _, rates[level] = over_tuned_base(EnvConfig.from_kwargs(**env), {}, tuning_seeds(seed, budget.tune_seeds),
                                          budget.tune_points, device, LEVELS[level].base_factor)
    return rates


def level_launch(level: str, budget: Budget, seed: int, restart: int = 0,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None, device: str = "cpu",
                 base: Mapping[str, Any] | None = None) -> dict:
    """The fast-path launch dict (``marl_net.experiment``) of one level's meta-training: the
    budget's copies per iteration, the learning rate annealed to 0 over its iterations (CleanRL's
    anneal_lr), then ``overrides["ppo"]`` (``--set ppo.copies=...`` wins over the budget).
    ``base``: the level's entry of :func:`base_rates` (sets the env's ``base_rate``)."""
    settings = job_settings(level, overrides)
    if base is not None:
        settings["env"]["base_rate"] = base["base_rate"]
    env = EnvConfig.from_kwargs(**settings["env"]).to_dict()
    ppo = {"copies": budget.copies, "lr_anneal_iterations": budget.iterations, "device": device, **settings["ppo"]}
    return {"env": env, "policy": dict(settings["policy"]), "ppo": ppo,
            "run": {"seed": restart_seed(seed, restart), "checkpoint_frequency": CHECKPOINT_EVERY,
                    "checkpoint_at_end": True},
            "stop": {"training_iteration": budget.iterations}}


def train_level(config: dict) -> None:
    """The Tune trainable of one trial: ``train_fast`` on ``config["launches"][config["trial"]]``,
    with the driver's kernel switch (``config["kernels"]``, ``marl_net.numerics``)."""
    from marl_net import numerics
    from marl_net.fast.tune_trainable import train_fast

    numerics.set_kernels(config.get("kernels"))
    train_fast(copy.deepcopy(config["launches"][config["trial"]]))


train_level._handles_checkpoint_freq = True
train_level._handles_checkpoint_at_end = True


def trial_key(level: str, restart: int) -> str:
    return level if restart == 0 else f"{level}.{restart}"


def _progress_callback(total: int, enabled: bool):
    from ray.tune import Callback
    from tqdm import tqdm

    class Progress(Callback):
        """One bar over every trial's iterations, with each trial's latest inner loss."""

        def __init__(self):
            self.bar = tqdm(total=total, desc="meta-training (fast-path PPO, one Tune launch)", unit="it",
                            disable=not enabled)
            self.losses: dict[str, float] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.bar.update(1)
            self.losses[trial.config["trial"]] = result.get("inner_loss_final", float("nan"))
            self.bar.set_postfix_str(" ".join(f"{k}={v:.3f}" for k, v in sorted(self.losses.items())))

        def on_experiment_end(self, trials, **info):
            self.bar.close()

    return Progress()


class TrialResult(NamedTuple):
    """One finished trial of :func:`launch_trials`: its final policy (as trained, in train mode),
    Tune's last metrics, the trial's folder and the numerics record of its meta-training."""

    policy: torch.nn.Module
    metrics: dict
    path: str
    numerics: dict | None


def launch_trials(launches: Mapping[str, dict], iterations: int, out: Path, progress: bool = True,
                  address: str | None = None, kernels: bool | None = None,
                  what: str = "meta-training") -> tuple[dict[str, TrialResult], float]:
    """Run every fast-path launch dict of ``launches`` (key -> ``marl_net.experiment`` launch) as a
    trial of ONE Tune launch of :func:`train_level` (experiment ``out/tune``, local Ray in-process
    unless ``address`` or ``$RAY_ADDRESS`` names a cluster; a Ray started here is shut down after).
    Returns ``({key: TrialResult}, the launch's wall-clock seconds)``. Raises RuntimeError (its
    message begins with ``what``) when a trial errored or stopped before ``iterations`` iterations.
    ``progress``: one bar over every trial's iterations. ``kernels``: the C++ kernels on or off in
    every trial (None: each worker's own setting)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then prints nothing: the progress bar is ours
    import ray
    from ray import tune

    from marl_net.commands.tune import init_ray

    out = Path(out).absolute()
    started_here = not ray.is_initialized()
    init_ray(address, log_to_driver=False)  # the progress bar reports the trials
    start = time.perf_counter()
    run_config = tune.RunConfig(name="tune", storage_path=str(out), verbose=0,
                                failure_config=tune.FailureConfig(max_failures=1),
                                callbacks=[_progress_callback(len(launches) * iterations, progress)])
    tuner = tune.Tuner(train_level, param_space={"trial": tune.grid_search(list(launches)),
                                                    "launches": dict(launches), "kernels": kernels},
                       run_config=run_config)
    try:
        grid = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()  # free the CPUs for the held-out evaluation
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} {what} trial(s) errored: {grid.errors[0]!r}")
    wall = round(time.perf_counter() - start, 1)
    trained = {}
    for result in grid:
        key = result.config["trial"]
        metrics = result.metrics or {}
        done = int(metrics.get("training_iteration") or 0)
        if result.checkpoint is None or done < iterations:
            raise RuntimeError(f"{what} stopped early: trial {key} ran {done} of {iterations} iterations "
                               f"(interrupted?); its Tune experiment is in {out / 'tune'}")
        with result.checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / "fast_ppo.pt", map_location="cpu", weights_only=False)
        trained[key] = TrialResult(policy_from_state(state["policy_config"], state["policy"]), metrics,
                                   str(result.path), state.get("numerics"))
    return trained, wall


def meta_train(levels: Sequence[str], budget: Budget, seed: int, out: Path, device: str = "cpu",
               progress: bool = True, overrides: Mapping[str, Mapping[str, Any]] | None = None,
               address: str | None = None, kernels: bool | None = None) -> dict[str, tuple[torch.nn.Module, dict]]:
    """Meta-train every level in ``levels`` as trials of one Tune launch (:func:`launch_trials`);
    returns ``{level: (policy, summary)}`` with the kept policy and results.json's ``levels[LEVEL]``.
    ``kernels``: the C++ kernels on or off in every trial (None: each worker's own setting)."""
    bases = base_rates(levels, budget, seed, overrides, device)
    launches = {trial_key(lv, k): level_launch(lv, budget, seed, k, overrides, device, bases[lv])
                for lv in levels for k in range(budget.restarts)}
    trained, wall = launch_trials(launches, budget.iterations, out, progress, address, kernels)
    kept = {}
    for level in levels:
        keys = [trial_key(level, k) for k in range(budget.restarts)]
        env = EnvConfig.from_kwargs(**launches[keys[0]]["env"])
        summary = {"iterations": 0, "agent_steps": 0, "seconds": 0.0}
        for key in keys:
            metrics = trained[key][1]
            summary["iterations"] += int(metrics["training_iteration"])
            summary["agent_steps"] += int(metrics["num_agent_steps_sampled_lifetime"])
            summary["seconds"] += round(float(metrics["time_total_s"]), 1)
        best = 0
        if budget.restarts > 1:
            best, finals = select_restart([trained[k][0] for k in keys], env, budget, seed, device)
            summary["restarts"] = [{"seed": restart_seed(seed, k), "train_final_loss": f} for k, f in enumerate(finals)]
            summary["selected_restart"] = best
        policy, metrics, path, ran = trained[keys[best]]
        launch = launches[keys[best]]
        summary.update(final_inner_loss=metrics.get("inner_loss_final"), trial_dir=str(path), launch_seconds=wall)
        kept[level] = (policy.eval(), {"observations": list(env.observations), "env": env.to_dict(),
                                       "policy": policy.config.to_dict(), "ppo": launch["ppo"],
                                       "memory": memory_of(policy.config.to_dict(), env.observations),
                                       "base": bases[level], "train": summary,
                                       "numerics": ran})
    return kept


def memory_of(policy_config: Mapping[str, Any], observations: Sequence[str] = ()) -> str:
    """results.json's ``memory``: the recurrent cell (or ``none`` for the feed-forward policy), then
    the accumulator features among ``observations``, e.g. ``none + accumulators ema0.9[gradient]``."""
    from marl_net.accumulators import accumulators_of

    cell = str(policy_config.get("memory") or "none")
    accs = [a.name for a in accumulators_of(observations)]
    return f"{cell} + accumulators {', '.join(accs)}" if accs else cell


def policy_from_state(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The policy (feed-forward, or recurrent where ``config`` asks for memory) with ``state_dict``."""
    from marl_net.policies.recurrent_policy import make_policy
    from marl_net.policies.synapse_policy import PolicyConfig

    policy = make_policy(PolicyConfig(**config))
    policy.load_state_dict(state_dict)
    return policy


def select_restart(policies: Sequence[torch.nn.Module], train: EnvConfig, budget: Budget, seed: int,
                   device: str = "cpu") -> tuple[int, list[float]]:
    """Index of the policy with the lowest mean final loss on ``budget.eval_episodes`` train-split
    networks (never the held-out ones), and every policy's figure."""
    from marl_net.evaluation import rollout_losses
    from marl_net.rules.tuning import lowest

    with torch.no_grad():
        finals = [float(rollout_losses(p, train.replace(split="train"), episodes=budget.eval_episodes, seed=seed,
                                       device=device)[:, -1].mean()) for p in policies]
    return lowest(range(len(finals)), finals), finals


def save_policy(path: Path, policy: torch.nn.Module, env: Mapping[str, Any], level: str | None = None,
                numerics: Mapping[str, Any] | None = None) -> Path:
    """Write a learned rule as ``{"config", "state_dict", "env", "level", "numerics"}`` (read by
    :func:`load_policy`; ``numerics``: the record of the meta-training that produced it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": policy.config.to_dict(), "state_dict": policy.state_dict(), "env": dict(env),
                "level": level, "numerics": dict(numerics or {})}, path)
    return path


POLICY_FILE_KEYS = {"config", "state_dict", "env"}


def is_policy_file(path: str | Path) -> bool:
    """Whether ``path`` is a learned rule written by :func:`save_policy` (not a training checkpoint)."""
    path = Path(path)
    if not (path.is_file() and path.suffix == ".pt"):
        return False
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # not a torch file: not ours either
        return False
    return isinstance(saved, dict) and POLICY_FILE_KEYS <= set(saved)


def load_policy(path: str | Path) -> tuple[torch.nn.Module, EnvConfig, str | None]:
    """(policy, the env it was meta-trained with, its level) from a file :func:`save_policy` wrote."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: pass a learned rule saved by `marl-net run` (RUN_DIR/policies/LEVEL.pt)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(saved, dict) or not POLICY_FILE_KEYS <= set(saved):
        raise ValueError(f"{path} is not a learned rule saved by `marl-net run` (RUN_DIR/policies/LEVEL.pt)")
    return policy_from_state(saved["config"], saved["state_dict"]).eval(), EnvConfig.from_kwargs(**saved["env"]), \
        saved.get("level")
