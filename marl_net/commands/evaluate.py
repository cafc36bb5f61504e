"""``marl-net eval``: run a trained meta-policy on held-out tasks and report the inner loss curve.

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
    parser.add_argument("checkpoint", help="trial directory, checkpoint_NNNNNN directory, or the module directory")
    parser.add_argument("--task", default=None, help="inner task (default: the one trained on)")
    parser.add_argument("--episodes", type=int, default=16, help="held-out episodes (networks) to run (default 16)")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="network sizes, e.g. --layers 8 32 4")
    parser.add_argument("--ownership", default=None, choices=["outgoing", "incoming"])
    parser.add_argument("--max-cycles", type=int, default=None, help="steps per episode (default: as trained)")
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
