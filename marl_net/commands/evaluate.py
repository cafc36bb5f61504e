"""``marl-net eval``: evaluate a learned rule on held-out tasks.

A learned rule saved by ``marl-net run`` (``RUN_DIR/policies/LEVEL.pt``) is compared with tuned hand
rules by the main job's protocol (``marl_net.heldout``): every rule's step size tuned on the train
split of the setting by the final loss, then every rule on the same held-out tasks, initial weights
and minibatches::

    marl-net eval results/main/policies/feedback.pt --task mnist1d --layers 40 256 10 --steps 1000 \
        --compare sgd,adam,dfa --episodes 32 --out eval_feedback

It writes ``OUT/results.json`` with the main job's ``tuned_lr``, ``heldout``, ``settings`` and
``networks`` sections (one task), ``OUT/table.md`` and ``OUT/curves.png``. The setting is the env the rule was
meta-trained with, with ``--task``, ``--layers`` and ``--steps`` changed (the rule is per synapse,
so other widths work).

An RLlib checkpoint is run alone, without hand rules::

    marl-net eval ~/marl_net_results/rllib_teacher_student/PPO_.../checkpoint_000029 \\
        --task teacher_student --episodes 32 --out eval_ts

CHECKPOINT is a Tune trial directory (its latest checkpoint is used), an algorithm checkpoint
``checkpoint_NNNNNN`` or the module directory inside one, of the RLlib path or the fast path
(``fast_ppo.pt``). A checkpoint without a record of the env it trained on, or whose policy does
not read the evaluation env's observations, is refused naming the keys. Every neuron acts with the policy's
deterministic action (its Gaussian mean) on ``--episodes`` fresh networks whose task instances
come from the held-out split (never seen in meta-training). Env settings default to those the
checkpoint trained with (its trial's ``params.json``); ``--task``, ``--layers``, ``--ownership``
and ``--max-cycles`` change them (the rule is per synapse, so other widths work). Prints the loss
after each step as mean and std over episodes, and writes ``loss_curve.csv``, ``loss_curve.json``
and ``loss_curve.png`` to ``--out`` (default: ``eval/`` next to the checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path

HELP = "evaluate a trained meta-policy checkpoint on held-out tasks"


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a learned rule saved by marl-net run (RUN_DIR/policies/LEVEL.pt), or a "
                                           "Tune trial directory, checkpoint_NNNNNN directory, or module directory")
    parser.add_argument("--task", default=None, help="inner task (default: the one trained on)")
    parser.add_argument("--episodes", type=int, default=16, help="held-out episodes (networks) to run (default 16)")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="network sizes, e.g. --layers 8 32 4")
    parser.add_argument("--ownership", default=None, choices=["outgoing", "incoming"])
    parser.add_argument("--max-cycles", "--steps", dest="max_cycles", type=int, default=None,
                        help="weight updates per network (default: as trained)")
    parser.add_argument("--compare", default="sgd,adam",
                        help="LEVEL.pt only: hand rules to compare with, tuned alike (default sgd,adam; e.g. "
                             "sgd,adam,dfa,np)")
    parser.add_argument("--tune-seeds", type=int, default=8, help="LEVEL.pt only: train-split networks per step size")
    parser.add_argument("--tune-points", type=int, default=6, help="LEVEL.pt only: step sizes tried per rule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output directory (default: <checkpoint>/eval)")


def eval_env_config(trained: dict, args):
    from marl_net.config import EnvConfig

    kwargs = {k: v for k, v in trained.items() if k not in ("crash_probability",)}
    for key, value in (("task", args.task), ("layers", args.layers), ("ownership", args.ownership),
                       ("max_cycles", args.max_cycles)):
        if value is not None:
            kwargs[key] = value
    if args.task is not None and args.task != trained.get("task") and args.layers is None:
        kwargs.pop("layers", None)  # a different task: let the task's own input/output sizes decide
        from marl_net.tasks import make_task

        task = make_task(args.task)
        default_hidden = EnvConfig().layers[1:-1]
        kwargs["layers"] = (task.input_dim, *default_hidden, task.output_dim)
    kwargs["split"] = "heldout"
    return EnvConfig.from_kwargs(**kwargs)


def write_outputs(out: Path, mean, std, config, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    steps = list(range(len(mean)))
    with open(out / "loss_curve.csv", "w") as fh:
        fh.write("step,loss_mean,loss_std\n")
        for t, m, s in zip(steps, mean.tolist(), std.tolist()):
            fh.write(f"{t},{m:.6g},{s:.6g}\n")
    with open(out / "loss_curve.json", "w") as fh:
        from marl_net import numerics

        json.dump({"env_config": config.to_dict(), "loss_mean": mean.tolist(), "loss_std": std.tolist(),
                   "numerics": numerics.describe("cpu")}, fh, indent=1)  # the arithmetic of this evaluation
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, mean.numpy(), label="learned rule (mean)")
    ax.fill_between(steps, (mean - std).numpy(), (mean + std).numpy(), alpha=0.25, label="± std over episodes")
    ax.set_xlabel("step (inner update)")
    ax.set_ylabel("inner loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png", dpi=120)
    plt.close(fig)


def load_checkpoint(path: str):
    """``(policy, trained env config, default output folder)`` of a fast-path or RLlib checkpoint.
    A checkpoint without a record of the env it trained on is refused: the defaults would run a
    different env than the one it learned on, silently."""
    from marl_net.fast import checkpoints as fast_checkpoints

    if not Path(path).expanduser().exists():
        raise FileNotFoundError(f"checkpoint {path!r} does not exist: pass a Tune trial directory or a "
                                "checkpoint_NNNNNN directory in it")
    file = fast_checkpoints.find(path)
    if file is not None:
        policy, trained = fast_checkpoints.load_policy(file)
        return policy, trained, file.parent / "eval"
    from marl_net.rllib.checkpoints import load_policy, module_dir

    policy, trained = load_policy(path)
    if not trained:
        raise ValueError(f"found no record of the env {path!r} trained on (the algorithm checkpoint's "
                         "class_and_ctor_args.pkl or the trial's params.json): pass the trial directory or a "
                         "checkpoint_NNNNNN directory inside it")
    return policy, trained, module_dir(path).parents[3] / "eval"  # next to the checkpoint


def main(args) -> int:
    from marl_net.meta_training import is_policy_file

    if is_policy_file(args.checkpoint):
        return compare_learned(args)
    return evaluate_checkpoint(args)


def learned_setting(trained, args):
    """The held-out setting of ``marl-net eval LEVEL.pt``: the rule's meta-training env with
    ``--task``, ``--layers``, ``--ownership`` and ``--steps`` changed (a PCA task takes as many
    principal components as the network has inputs)."""
    base = trained.to_dict()
    if args.task is not None and args.task != trained.task:
        base["task_kwargs"] = {}  # the trained task's options do not apply to another task
    config = eval_env_config(base, args)
    if config.task in ("digits", "mnist"):
        config = config.replace(task_kwargs={**dict(config.task_kwargs), "pca": config.layers[0]})
    return config


def compare_learned(args) -> int:
    import torch

    from marl_net import heldout, report
    from marl_net.levels import LEVELS, available_rules
    from marl_net.meta_training import load_policy
    from marl_net.tasks import make_task

    policy, trained, level = load_policy(args.checkpoint)
    rules = [r.strip() for r in args.compare.split(",") if r.strip()]
    present, absent = available_rules(rules)
    if absent or len(set(rules)) != len(rules):
        raise ValueError(f"--compare {args.compare!r}: list registered hand rules once each; unknown: {absent}")
    if args.episodes < 1 or args.tune_seeds < 1 or args.tune_points < 1:
        raise ValueError("--episodes, --tune-seeds and --tune-points must be positive")
    config = learned_setting(trained, args)
    task = make_task(config.task, config.layers[0], config.layers[-1], **config.task_kwargs)
    name = f"learned_{level}" if level else "learned"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = heldout.evaluate_setting(config, {name: (policy, config)}, present,
                                        heldout.heldout_seeds(args.seed, args.episodes),
                                        heldout.tuning_seeds(args.seed, args.tune_seeds), args.tune_points,
                                        task.loss == "cross_entropy", on_rule=lambda r: print(f"  done: {r}"),
                                        base_factors={name: LEVELS[level].base_factor if level in LEVELS else 1.0})
    finally:
        torch.set_num_threads(threads)
    key = config.task if args.task else "setting"
    results = {"policy": str(args.checkpoint), "level": level, "seed": args.seed,
               "tuned_lr": {key: {r: run.step for r, run in runs.items()}},
               "heldout": {key: {r: heldout.summarize(run) for r, run in runs.items()}},
               "settings": {key: config.to_dict()},
               "networks": {key: {"eval_episodes": args.episodes, "tune_seeds": args.tune_seeds,
                                  "tune_points": args.tune_points,
                                  "tuned_at_grid_edge": [r for r, run in runs.items() if run.at_edge]}}}
    out = Path(args.out) if args.out else Path(args.checkpoint).parent.parent / f"eval_{Path(args.checkpoint).stem}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    table = report.setting_table(results["heldout"][key], results["tuned_lr"][key], name, results["networks"])
    (out / "table.md").write_text(table)
    report.plot_setting(out / "curves.png", key, results["heldout"][key])
    print(f"{config.task} (held-out), layers {list(config.layers)}, {config.max_cycles} updates, {args.episodes} networks")
    print(table)
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'curves.png'}")
    return 0


def evaluate_checkpoint(args) -> int:
    from marl_net.evaluation import curve_stats, rollout_losses

    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: evaluate at least one episode")
    policy, trained, default_out = load_checkpoint(args.checkpoint)
    config = eval_env_config(trained, args)
    losses = rollout_losses(policy, config, args.episodes, seed=args.seed)
    mean, std = curve_stats(losses)
    out = Path(args.out) if args.out else default_out
    print(f"held-out {config.task}, layers {list(config.layers)}, {args.episodes} episodes, deterministic actions")
    print(f"{'step':>5} {'loss mean':>12} {'loss std':>12}")
    for t, (m, s) in enumerate(zip(mean.tolist(), std.tolist())):
        print(f"{t:>5} {m:>12.5g} {s:>12.5g}")
    print(f"improvement over the episode: {float(mean[0] - mean[-1]):.5g}")
    write_outputs(out, mean, std, config, f"{config.task} (held-out), {args.episodes} episodes")
    print(f"wrote {out / 'loss_curve.png'}, loss_curve.csv, loss_curve.json")
    return 0
