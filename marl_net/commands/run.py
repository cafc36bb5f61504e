"""``marl-net run``: the main job (what ``make run`` runs).

Meta-learns a local learning rule with fast-path PPO on teacher-student tasks, then evaluates it
on held-out tasks (unseen teachers, a wider hidden layer, digits) against SGD, NP and WP tuned on
the training split, under identical budgets. See ``marl_net.main_job`` for the details and the
results.json format.
"""

from __future__ import annotations

HELP = "meta-learn a local learning rule and compare it with SGD, NP and WP (the main job)"


def add_arguments(parser) -> None:
    parser.add_argument("--budget", default="default",
                        help="'default' (about 3 minutes on a quiet 2-core machine), 'quick' "
                             "(a smoke check, under a minute), or a factor scaling the default's meta-training, "
                             "e.g. 0.5 or 3")
    parser.add_argument("--out", default="results/main", help="output folder (default results/main)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole job (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, or cuda on a GPU machine")
    parser.add_argument("--observations", default=None,
                        help="the learned rule's features, comma-separated; 'default' stands for the environment's "
                             "local defaults. Default: default,np_eligibility,np_error (plus node perturbation's "
                             "three-factor signals); e.g. 'default' alone for the rule without them, or "
                             "default,gradient (privileged: `marl-net check` notes it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change a meta-training setting of marl_net.main_job (sections env, policy, ppo; the "
                             "value is read as YAML), e.g. --set env.action_scale=0.1 --set ppo.gamma=0.9; repeatable")
    parser.add_argument("--restarts", type=int, default=1,
                        help="independent meta-trainings (each the budget's iterations, seeds derived from --seed); "
                             "the one with the lowest final loss on train-split networks is evaluated (default 1)")
    parser.add_argument("--kernels", choices=("on", "off"), default=None,
                        help="the C++ kernels (policy, observation rows) on, or off for torch only; default: on "
                             "unless MARL_NET_FUSED=0. What ran is recorded in results.json['numerics']")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_job_overrides(items: list[str], observations: str | None) -> dict[str, dict]:
    """``--set section.key=value`` items and ``--observations`` -> ``main_job.run``'s overrides."""
    from marl_net import main_job
    from marl_net.experiment import parse_override

    overrides: dict[str, dict] = {}
    for item in items:
        parts, value = parse_override(item)
        if len(parts) != 2 or parts[0] not in main_job.SECTIONS:
            raise ValueError(f"--set {item!r}: write SECTION.KEY=VALUE with SECTION one of {list(main_job.SECTIONS)}, "
                             "e.g. --set env.action_scale=0.1")
        overrides.setdefault(parts[0], {})[parts[1]] = value
    if observations is not None:
        overrides.setdefault("env", {})["observations"] = main_job.parse_observations(observations)
    main_job.check_settings(overrides)  # refuse a bad setting now, naming the fix
    return overrides


def main(args) -> int:
    from dataclasses import replace
    from pathlib import Path

    from marl_net import main_job

    budget = replace(main_job.parse_budget(args.budget), restarts=args.restarts)  # Budget refuses restarts < 1
    overrides = parse_job_overrides(args.overrides, args.observations)
    out = Path(args.out)
    restarts = f", best of {budget.restarts} restarts" if budget.restarts > 1 else ""
    copies = main_job.ppo_settings(budget, overrides)["copies"]
    print(f"marl-net run: budget {budget.name} ({budget.iterations} PPO iterations x {copies} networks"
          f"{restarts}), output in {out}/")
    privileged = main_job.privileged_features(main_job.train_config(overrides).observations)
    if privileged:
        print(f"the learned rule observes privileged features: {privileged}")
    results = main_job.run(budget, out, seed=args.seed, device=args.device, progress=not args.no_progress,
                           overrides=overrides, kernels=None if args.kernels is None else args.kernels == "on")
    print()
    print((out / "table.md").read_text())
    t = results["train"]
    print(f"meta-training: {t['iterations']} iterations, {t['agent_steps']:,} agent-steps in {t['seconds']} s")
    n = results["numerics"]
    print(f"numerics:    {n['policy_path']}, torch {n['torch']}, {n['device_name']}")
    print(f"results:     {out / 'results.json'}\ntable:       {out / 'table.md'}")
    print(f"curves:      {out}/curves_*.png\ntensorboard: tensorboard --logdir {out / 'tb'}\n"
          f"policy:      {out / 'policy.pt'}")
    return 0
