"""Which memory features, and which correction scale, each ladder level uses, chosen on the TRAIN split only.

For one level, meta-trains the level's rule once per variant and ``--action-scale`` value: the
level's local defaults and signals (without the memory ``marl_net.levels`` gave it; with its base
rule's feature) plus the variant's extra features, accumulators ``ema<d>[s]`` / ``rms<d>[s]`` /
``adam[s]`` (``marl_net.accumulators``), over the level's base rule (``marl_net.base_rules``, at its
train-split tuned step size times ``--base-factor``, by default the level's) unless ``--no-base``,
with the main job's settings and budget, in this process (no Tune). Then, on train-split networks of each setting, it
puts the base rule at its step size tuned there (the options the held-out suite tries,
``heldout.learned_options``: the base factor, and the full step where the factor is not 1; the
lower kept), tunes the learned rule's ``action_scale`` (``marl_net.rules.tuning``) and prints its
tuned final loss, with tuned SGD, Adam and the base rule on the same train-split networks beside
it. No held-out task is used. ``--correction relative``, ``--base`` (e.g. ``dfa_adam``) and ``--train-task`` (e.g.
``teacher_student,teacher_classes``) vary the correction's form, the hand rule it corrects and the
meta-training task, ``--train-layers`` (e.g. ``8,32,4``) its network.
``marl_net.levels`` adopts a memory variant where it lowers the final loss on the train split (the
sum of the log ratios to ``none`` over the settings is negative), and the correction form that meets
most of the level's loss targets there; the rows are in docs/results/level_features/ and
docs/ladder.md::

    python experiments/level_features.py --level gradient --variant none= \
        --variant rms='rms0.99[gradient]' --variant rms_ema='rms0.99[gradient],ema0.9[gradient]' \
        --settings teacher_student,teacher_student_long,digits_wide --out gradient.json
    python experiments/level_features.py --level gradient --variant 'ema=ema0.9[gradient]' \
        --action-scale 0.2,0.05 --out gradient_scale.json

(4-8 minutes per variant on the 2-core VM while shared: meta-training at the default budget on
one core, then the tuning runs; ``--budget quick`` for a smoke run.)
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from marl_net import suite
from marl_net.base_rules import BASES
from marl_net.budgets import parse_budget
from marl_net.config import EnvConfig
from marl_net.fast.tune_trainable import trainer_from_launch
from marl_net.heldout import learned_options, over_tuned_base, tune_over_options, tuning_seeds
from marl_net.levels import DEFAULT_FEATURES, LEVELS
from marl_net.meta_training import job_settings, level_launch
from marl_net.rules.tuning import default_grid, tune_lr

# action_scale factors tried for every variant: finer near the trained scale than the suite's grid
SCALE_FACTORS = (1 / 27, 1 / 9, 0.25, 1 / 3, 0.35, 0.5, 0.7, 1.0, 1.4)


def variant(text: str) -> tuple[str, tuple[str, ...]]:
    name, _, extra = text.partition("=")
    return name, tuple(f for f in extra.split(",") if f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", required=True, choices=list(LEVELS))
    parser.add_argument("--variant", action="append", type=variant, required=True,
                        help="NAME=FEATURE[,FEATURE...] (NAME= for the level as defined)")
    parser.add_argument("--settings", default="teacher_student,teacher_student_long")
    parser.add_argument("--budget", default="default",
                        help="default, quick, or a factor scaling the default's meta-training (2: twice the PPO iterations)")
    parser.add_argument("--action-scale", default=None,
                        help="comma-separated meta-training action_scale values (default: the job's)")
    parser.add_argument("--no-base", action="store_true", help="meta-train without the level's base rule")
    parser.add_argument("--base", default=None, choices=list(BASES),
                        help="the hand rule the learned rule corrects (marl_net.base_rules; default: the level's)")
    parser.add_argument("--base-factor", type=float, default=None,
                        help="the base rule's step size factor (default: the level's base_factor)")
    parser.add_argument("--train-task", default=None,
                        help="comma-separated meta-training tasks, each a variant of its own (default: the job's, "
                             "teacher_student); e.g. teacher_student,teacher_classes")
    parser.add_argument("--train-layers", default=None,
                        help="the meta-training network, e.g. 8,32,4 (default: the job's, 8-16-4)")
    parser.add_argument("--correction", default=None, choices=("additive", "relative"),
                        help="how the rule corrects its base (EnvConfig.correction; default: the level's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune-seeds", type=int, default=8)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        budget = parse_budget(args.budget)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        layers = tuple(int(n) for n in args.train_layers.split(",")) if args.train_layers else None
    except ValueError:
        parser.error(f"--train-layers {args.train_layers!r}: write the layer sizes as integers, e.g. 8,32,4")
    level = LEVELS[args.level]
    plain = tuple(n for n in level.observations if n not in level.memory)  # without the memory it now uses
    base_rule = level.base if args.base is None else args.base
    if args.base and BASES[args.base].feature not in plain:
        plain += (BASES[args.base].feature,)
    hand_base = EnvConfig.from_kwargs(**{**job_settings("perturbation")["env"], "observations": DEFAULT_FEATURES,
                                         "base_update": None, "base_rate": 0.0})
    rows = {}
    seeds = tuning_seeds(args.seed, args.tune_seeds)
    settings = [s for s in args.settings.split(",") if s]
    scales = [float(x) for x in args.action_scale.split(",")] if args.action_scale else [None]
    train_tasks = [t for t in args.train_task.split(",") if t] if args.train_task else [None]
    factor = level.base_factor if args.base_factor is None else args.base_factor
    lrs: dict[str, dict[str, float]] = {setting: {} for setting in settings}  # base rules' tuned lr per setting
    train_lrs: dict[str | None, dict[str, float]] = {}  # per meta-training task: the base rule's tuned lr (tuned once)
    for name, extra in args.variant:
        for scale, task in [(scale, task) for scale in scales for task in train_tasks]:
            env = {"observations": plain + extra, **({"action_scale": scale} if scale else {}),
                   **({"task": task} if task else {}), **({"base_update": None} if args.no_base else {}),
                   **({"base_update": BASES[args.base].feature} if args.base and not args.no_base else {}),
                   **({"correction": args.correction} if args.correction else {}),
                   **({"layers": layers} if layers else {})}
            overrides = {args.level: {"env": env}}
            base = None if args.no_base else over_tuned_base(
                EnvConfig.from_kwargs(**job_settings(args.level, overrides)["env"]), train_lrs.setdefault(task, {}),
                seeds, budget.tune_points, factor=factor)[1]
            launch = level_launch(args.level, budget, args.seed, overrides=overrides, base=base)
            trainer = trainer_from_launch(launch)
            start = time.perf_counter()
            while trainer.iteration < budget.iterations:
                metrics = trainer.train()
            policy = trainer.policy.eval()
            trained = trainer.env.config
            key = name + ("" if scale is None else f"@{scale:g}") + ("" if task is None else f"/{task}")
            row = {"extra": list(extra), "task": trained.task, "layers": list(trained.layers),
                   "correction": trained.correction,
                   "action_scale": trained.action_scale, "base_rate": trained.base_rate,
                   "train_seconds": round(time.perf_counter() - start, 1),
                   "train_final_inner_loss": metrics.get("inner_loss_final")}
            for setting in settings:  # the base options the suite tries (heldout.learned_options), the lower kept
                options = learned_options(suite.setting(setting, trained), lrs[setting], seeds, budget.tune_points,
                                          factor=factor)
                with torch.no_grad():
                    final, _, based, tuned = tune_over_options(policy, options, seeds, SCALE_FACTORS)
                row[setting] = {"final": final, "action_scale": tuned.best, "base": based}
            rows[key] = row
            print(key, json.dumps(row), flush=True)
    rules = dict.fromkeys(("sgd", "adam") + ((base_rule,) if base_rule and not args.no_base else ()))
    for setting in settings:
        cfg = suite.setting(setting, hand_base)
        for rule in rules:
            tuned = tune_lr(rule, cfg.replace(split="train"), seeds=seeds, grid=default_grid(rule, cfg.task))
            rows.setdefault(rule, {})[setting] = {"final": float(min(tuned.scores)), "lr": tuned.best}
        print(setting, {r: rows[r][setting] for r in rules}, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
