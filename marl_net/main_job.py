"""The main job (``marl-net run``, what ``make run`` runs): the rule ladder.

What can a learned local rule reach given which signal? One rule is meta-learned per information
level (``marl_net.levels``: ``perturbation``, ``feedback``, ``gradient``) and measured on a
held-out suite (``marl_net.suite``) against the hand-designed rule that uses the same information
and against tuned SGD and Adam:

1. **meta-training** (``marl_net.meta_training``): fast-path PPO on teacher-student 8-16-4 (train
   split), one Tune launch with a trial per level (``--address``: on a Ray cluster);
2. **held-out evaluation** (``marl_net.heldout``): every rule's step size tuned on the train
   split of each setting by the final loss (``marl_net.rules.tuning``), then every rule run on
   the same held-out tasks, initial weights and minibatches;
3. **report** (``marl_net.report``): ``results.json``, ``table.md``, ``curves_LEVEL.png``,
   TensorBoard logs (meta-training under ``tune/``, held-out curves under ``tb/heldout/``), the
   learned rules as ``policies/LEVEL.pt``;
4. **targets** (``marl_net.targets``), checked by ``marl-net check RUN_DIR``.

A level whose signals or baselines this build lacks is skipped, and results.json says why
(``skipped``); so is a setting whose task it lacks, or a hand rule it does not have.

``results.json``::

    {"budget": {...}, "seed": S, "seconds": ...,
     "learned_from": "RUN_DIR" (only when the rules were not meta-trained here: --learned-from),
     "levels": {"LEVEL": {"observations": [...], "policy": {...}, "memory": "none", "env": {...},
                          "base": {"rule", "lr", "factor", "base_rate", "action_scale"} or null,
                          "ppo": {...}, "train": {"iterations": ..., "agent_steps": ..., "seconds": ...},
                          "numerics": {...}}},   # marl_net.numerics.describe of its trial
     "numerics": {...},                          # of the held-out evaluation
     "tuned_lr": {"TASK": {"RULE": step}},
     "heldout": {"TASK": {"RULE": {"final_loss_mean", "final_loss_std", "auc_mean", "initial_loss_mean",
                                   "test_accuracy_mean", "test_accuracy_std" (classification),
                                   "curve_mean", "curve_std",
                                   "base" (a learned rule over a hand rule: as levels[LEVEL]["base"])}}},
     "settings": {"TASK": {env config}},
     "networks": {"TASK": {"eval_episodes", "tune_seeds", "tune_points",
                           "tuned_at_grid_edge": [RULE, ...]}},   # step sizes tuned to an end of the values tried
     "skipped": {...},
     "targets": [{"name", "value", "op", "bound", "met"}], "targets_skipped": [{"name", "reason"}]}

RULE is ``learned_LEVEL`` or a hand rule (``sgd``, ``adam``, ``np``, ``wp``, ``fa``, ``dfa``);
a learned rule's step is its ``action_scale``, a hand rule's its learning rate.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from marl_net import levels as ladder_levels
from marl_net.budgets import Budget
from marl_net.config import EnvConfig


def plan(levels: Sequence[str], budget: Budget) -> dict:
    """What this build can run of ``levels`` and ``budget.tasks``: ``{"levels", "tasks",
    "hand_rules", "skipped"}`` (skipped levels, settings and hand rules with the reason)."""
    from marl_net import suite

    skipped: dict[str, dict[str, str]] = {"levels": {}, "tasks": {}, "rules": {}}
    run_levels = []
    for name in levels:
        reason = ladder_levels.unavailable_reason(ladder_levels.LEVELS[name])
        if reason:
            skipped["levels"][name] = reason
        else:
            run_levels.append(name)
    tasks = []
    for task in budget.tasks:
        if suite.available(task):
            tasks.append(task)
        else:
            skipped["tasks"][task] = f"task {suite.SUITE[task].task!r} is not registered in this build"
    rules, absent = ladder_levels.available_rules(ladder_levels.hand_rules(run_levels))
    for rule in absent:
        skipped["rules"][rule] = "not registered in marl_net.rules.registry in this build"
    return {"levels": run_levels, "tasks": tasks, "hand_rules": rules, "skipped": skipped}


def run(budget: Budget, out: Path, seed: int = 0, levels: Sequence[str] | None = None, device: str = "cpu",
        progress: bool = True, overrides: Mapping[str, Mapping[str, Any]] | None = None,
        address: str | None = None, kernels: bool | None = None, learned_from: Path | None = None) -> dict:
    """The whole main job; returns the results dict (also written to ``out/results.json``).
    ``kernels``: the C++ kernels on (True) or torch only (False), in the meta-training trials and
    the held-out evaluation alike; None leaves ``marl_net.numerics``' setting. What ran is recorded:
    ``numerics`` (the held-out evaluation) and ``levels[LEVEL]["numerics"]`` (its meta-training).
    ``learned_from``: an earlier run's folder whose learned rules are evaluated instead of
    meta-training new ones (:func:`saved_rules`; ``overrides`` must then be empty)."""
    from marl_net import numerics

    with numerics.kernels(kernels):
        return _run(budget, Path(out), seed, levels, device, progress, overrides, address, kernels, learned_from)


def saved_rules(run_dir: Path, levels: Sequence[str],
                overrides: Mapping[str, Any] | None = None) -> dict[str, tuple[torch.nn.Module, dict]]:
    """``{level: (policy, its levels[LEVEL] record)}`` of the learned rules a ladder run saved
    (``RUN_DIR/policies/LEVEL.pt``, its ``results.json``), to evaluate them again without
    meta-training (``marl-net run --learned-from RUN_DIR``); each record gains ``learned_from``.
    Meta-training ``overrides`` are refused: the rules' settings are the run's."""
    import json

    from marl_net.meta_training import load_policy

    if overrides:
        raise ValueError("--learned-from evaluates rules already meta-trained: drop --set (their settings are in the "
                         "run's results.json)")
    run_dir = Path(run_dir)
    try:
        recorded = json.loads((run_dir / "results.json").read_text())["levels"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--learned-from {run_dir}: no ladder results.json there ({exc}); pass the folder of a "
                         "`marl-net run` (its --out)") from None
    rules = {}
    for level in levels:
        path = run_dir / "policies" / f"{level}.pt"
        if level not in recorded or not path.is_file():
            raise ValueError(f"--learned-from {run_dir}: it holds no learned rule of level {level!r} (policies/"
                             f"{level}.pt and its results.json record); pick from its levels: --levels "
                             f"{','.join(recorded)}")
        policy, env, _ = load_policy(path)
        if env.to_dict() != EnvConfig.from_kwargs(**recorded[level]["env"]).to_dict():
            raise ValueError(f"--learned-from {run_dir}: policies/{level}.pt and results.json disagree on the "
                             "rule's env; the folder was edited after its run")
        rules[level] = (policy, {**recorded[level], "learned_from": str(path)})
    return rules


def _run(budget: Budget, out: Path, seed: int, levels: Sequence[str] | None, device: str, progress: bool,
         overrides: Mapping[str, Mapping[str, Any]] | None, address: str | None, kernels: bool | None,
         learned_from: Path | None) -> dict:
    from marl_net import heldout, meta_training, numerics, report, targets

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    chosen = plan(ladder_levels.parse_levels(levels), budget)
    if not chosen["levels"]:
        raise ValueError(f"none of the levels can run in this build: {chosen['skipped']['levels']}")
    meta_training.check_settings(chosen["levels"], overrides)
    if learned_from is not None:
        trained = saved_rules(learned_from, chosen["levels"], overrides)
    else:
        trained = meta_training.meta_train(chosen["levels"], budget, seed, out, device, progress, overrides, address,
                                           kernels)
    policies = {}
    for level, (policy, summary) in trained.items():
        meta_training.save_policy(out / "policies" / f"{level}.pt", policy, summary["env"], level, summary["numerics"])
        policies[ladder_levels.LEVELS[level].learned] = (policy, EnvConfig.from_kwargs(**summary["env"]))
    # The hand rules run on the meta-training env with the local defaults only (they read no observations).
    hand_base = EnvConfig.from_kwargs(**{**meta_training.job_settings("perturbation", overrides)["env"],
                                         "observations": ladder_levels.DEFAULT_FEATURES, "base_update": None,
                                         "base_rate": 0.0})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batched networks: one thread is fastest, and the machine is shared
    try:
        with numerics.recording() as ran:
            factors = {ladder_levels.LEVELS[lv].learned: ladder_levels.LEVELS[lv].base_factor for lv in trained}
            suite_out = heldout.evaluate_suite(policies, chosen["tasks"], chosen["hand_rules"], hand_base, budget, seed,
                                               device, progress, factors)
        evaluated_with = numerics.describe(device, ran)
    finally:
        torch.set_num_threads(threads)
    results = {
        "budget": asdict(budget),
        "seed": seed,
        "levels": {level: summary for level, (_, summary) in trained.items()},
        "tuned_lr": suite_out["tuned_lr"],
        "heldout": suite_out["heldout"],
        "settings": suite_out["settings"],
        "networks": suite_out["networks"],
        "skipped": chosen["skipped"],
        "numerics": evaluated_with,
    }
    if learned_from is not None:
        results["learned_from"] = str(learned_from)
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["targets"], results["targets_skipped"] = targets.targets(results)
    report.write_report(out, results, suite_out["curves"])
    return results

