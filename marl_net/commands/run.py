"""``marl-net run``: the main job, the rule ladder (what ``make run`` runs).

    marl-net run                                   # every level, the default budget
    marl-net run --budget quick --out /tmp/quick    # the whole pipeline, smaller (about 2 minutes)
    marl-net run --levels perturbation,gradient --seed 1
    marl-net run --address 10.0.0.10:6379          # the same Tune launch on a Ray cluster
    marl-net run --family rl --budget quick        # the RL family (marl_net.rl_job), the same summary

Meta-learns one local learning rule per information level (perturbation, feedback, gradient) with
fast-path PPO, one Tune launch with a trial per level, then measures every learned rule on a
held-out suite against its level's hand-designed rules and tuned SGD and Adam. See
``marl_net.main_job`` for the results.json format and ``marl-net check RUN_DIR`` for the targets.
"""

from __future__ import annotations

HELP = "meta-learn a rule per information level and compare each with its hand rules, SGD and Adam (the main job)"


def add_arguments(parser) -> None:
    parser.add_argument("--family", choices=("supervised", "rl"), default="supervised",
                        help="'supervised' (default): the rule ladder; 'rl': meta-train a learned RL rule on bandits, "
                             "Harlow and mazes and compare it with the hand RL rules (marl_net.rl_job; --tasks then "
                             "names trained RL presets)")
    parser.add_argument("--budget", default="default",
                        help="'default' (what make run runs), 'quick' (the whole pipeline, smaller: about "
                             "2 minutes), or a factor scaling the default's meta-training, e.g. 0.5 or 3")
    parser.add_argument("--levels", default=None,
                        help="comma-separated levels to run (default: all of perturbation,feedback,gradient)")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated held-out settings to evaluate (default: the budget's; the default "
                             "budget runs all of teacher_student,teacher_student_wide,teacher_student_long,digits_wide,"
                             "mnist1d)")
    parser.add_argument("--out", default="results/main", help="output folder (default results/main)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole job (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, or cuda on a GPU machine")
    parser.add_argument("--address", default=None,
                        help="address of a Ray cluster to meta-train on (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change a meta-training setting of every level (marl_net.meta_training; sections env, "
                             "policy, ppo; the value is read as YAML), e.g. --set ppo.gamma=0.9, or of one level: "
                             "--set gradient.policy.hidden=64; repeatable")
    parser.add_argument("--restarts", type=int, default=1,
                        help="independent meta-trainings per level (trials of the same launch, seeds derived from "
                             "--seed); the one with the lowest final loss on train-split networks is kept (default 1)")
    parser.add_argument("--kernels", choices=("on", "off"), default=None,
                        help="the C++ kernels (policy, observation rows) on, or off for torch only, in meta-training "
                             "and evaluation; default: on unless MARL_NET_FUSED=0. What ran is recorded in "
                             "results.json['numerics'] and levels[LEVEL]['numerics']")
    parser.add_argument("--learned-from", default=None, metavar="RUN_DIR",
                        help="evaluate the learned rules an earlier run saved (RUN_DIR/policies/LEVEL.pt) instead "
                             "of meta-training: the held-out suite again, e.g. under a newer tuning protocol or "
                             "another --seed's networks; results.json records it, and the run-time target is skipped")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_job_overrides(items: list[str]) -> dict[str, dict]:
    """``--set section.key=value`` (every level) and ``--set level.section.key=value`` (one level)
    items -> ``main_job.run``'s overrides."""
    from marl_net import meta_training
    from marl_net.experiment import parse_override
    from marl_net.levels import LEVELS

    overrides: dict[str, dict] = {}
    for item in items:
        parts, value = parse_override(item)
        if len(parts) == 3 and parts[0] in LEVELS and parts[1] in meta_training.SECTIONS:
            overrides.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = value
        elif len(parts) == 2 and parts[0] in meta_training.SECTIONS:
            overrides.setdefault(parts[0], {})[parts[1]] = value
        else:
            raise ValueError(f"--set {item!r}: write SECTION.KEY=VALUE or LEVEL.SECTION.KEY=VALUE with SECTION one of "
                             f"{list(meta_training.SECTIONS)} and LEVEL one of {list(LEVELS)}, e.g. --set "
                             "env.action_scale=0.1 or --set gradient.policy.hidden=64")
    return overrides


SUPERVISED_ONLY = {"restarts": 1, "levels": None, "learned_from": None}  # the ladder's options and their defaults


def main(args) -> int:
    import sys

    job, curves, policies = (_rl_job if args.family == "rl" else _ladder_job)(args)
    try:
        results = job()
    except RuntimeError as exc:  # a meta-training trial errored or was stopped
        print(f"marl-net run: {exc}", file=sys.stderr)
        return 1
    print_summary(args.out, results, curves, policies)
    return 0


def _ladder_job(args):
    """Validate the ladder's options and print its plan; (the job to run, the curves' and the
    policies' lines of the summary)."""
    from dataclasses import replace
    from pathlib import Path

    from marl_net import main_job, meta_training
    from marl_net.budgets import parse_budget
    from marl_net.levels import parse_levels

    budget = replace(parse_budget(args.budget), restarts=args.restarts)  # Budget refuses restarts < 1
    if args.tasks is not None:
        budget = replace(budget, tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()))
    levels = parse_levels(args.levels)
    overrides = parse_job_overrides(args.overrides)
    chosen = main_job.plan(levels, budget)
    meta_training.check_settings(chosen["levels"], overrides)  # refuse a bad setting now, naming the fix
    out = Path(args.out)
    learned_from = None if args.learned_from is None else Path(args.learned_from)
    if learned_from is not None:
        if args.restarts != 1:
            raise ValueError("--learned-from evaluates rules already meta-trained: drop --restarts")
        main_job.saved_rules(learned_from, chosen["levels"], overrides)  # refuse a folder without the rules now
    training = (f"the learned rules of {learned_from}/ (no meta-training)" if learned_from else
                f"{budget.iterations} PPO iterations x {budget.copies} networks per level")
    print(f"marl-net run: budget {budget.name} ({training}), levels {chosen['levels']}, held-out {chosen['tasks']}, "
          f"output in {out}/")
    for kind, reasons in chosen["skipped"].items():
        for name, reason in reasons.items():
            print(f"  skipped {kind[:-1]} {name}: {reason}")

    def job():
        return main_job.run(budget, out, seed=args.seed, levels=levels, device=args.device,
                            progress=not args.no_progress, overrides=overrides, address=args.address,
                            kernels=None if args.kernels is None else args.kernels == "on", learned_from=learned_from)

    return job, f"{out}/curves_LEVEL.png", f"{out}/policies/LEVEL.pt (marl-net eval POLICY ...)"


def _rl_job(args):
    """The same for ``--family rl`` (``marl_net.rl_job``): the options ``--budget``, ``--tasks``
    (trained presets), ``--out``, ``--seed``, ``--device``, ``--address``, ``--set``, ``--kernels``
    and ``--no-progress``."""
    from pathlib import Path

    from marl_net import rl_job

    for option, default in SUPERVISED_ONLY.items():
        if getattr(args, option, default) != default:
            raise ValueError(f"--{option.replace('_', '-')} is an option of --family supervised; drop it with "
                             "--family rl (the RL family's options: --budget, --tasks, --out, --seed, --device, "
                             "--address, --set, --kernels, --no-progress)")
    budget = rl_job.parse_budget(args.budget)
    presets = rl_job.parse_presets(args.tasks)
    overrides = rl_job.parse_overrides(args.overrides)
    rl_job.check_settings(presets, overrides)  # refuse a bad setting now, naming the fix
    out = Path(args.out)
    print(f"marl-net run --family rl: budget {budget.name} ({budget.iterations} PPO iterations x "
          f"{budget.copies}+ networks per preset), meta-training on {list(presets)}, output in {out}/")

    def job():
        return rl_job.run(budget, out, seed=args.seed, presets=presets, device=args.device, overrides=overrides,
                          address=args.address, kernels=None if args.kernels is None else args.kernels == "on",
                          progress=not args.no_progress)

    return job, f"{out}/curves_rl.png", f"{out}/policies/rl_PRESET.pt"


def print_summary(out, results: dict, curves: str, policies: str) -> None:
    """The end of ``marl-net run`` (either family): the table, each trial's meta-training, the
    targets, the run's time and numerics, and where every output is (``curves``, ``policies``:
    those lines' text)."""
    from pathlib import Path

    out = Path(out)
    print()
    print((out / "table.md").read_text())
    for level, entry in results["levels"].items():
        t = entry["train"]
        print(f"meta-training {level}: {t['iterations']} iterations, {t['agent_steps']:,} agent-steps, "
              f"{t['seconds']:.1f} s in its trial")
    met = sum(t["met"] for t in results["targets"])
    print(f"targets: {met} of {len(results['targets'])} met ({len(results['targets_skipped'])} not measurable here); "
          f"`marl-net check {out}` lists them")
    n = results["numerics"]
    print(f"whole run: {results['seconds']} s; numerics: {n['policy_path']}, torch {n['torch']}, {n['device_name']}")
    print(f"results:     {out / 'results.json'}\ntable:       {out / 'table.md'}\ncurves:      {curves}\n"
          f"tensorboard: tensorboard --logdir {out}\npolicies:    {policies}")
