"""``marl-net reproduce``: reproduce a paper's experiments.

    marl-net reproduce chung --task {multiplexer,cartpole,acrobot,lunarlander}
        --methods weight_max,weight_max_traces,reinforce,reinforce_thomas,ste,backprop
        --seeds S --episodes E [--budget quick|paper] [--out DIR] [--device cpu|cuda] [--check]

Writes DIR/results.json, DIR/table.md (next to Chung's Table 1), DIR/learning_curves.png and
TensorBoard logs under DIR/tb. With ``--check`` the run fails (exit 1) when a learning-quality
target of ``marl_net.reproduce.check`` is missed.
"""

from __future__ import annotations

import argparse

HELP = "reproduce a paper's experiments (chung: Weight Maximization, Table 1)"
TASK_NAMES = ("multiplexer", "cartpole", "acrobot", "lunarlander")


def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``4,7,9`` -> those seeds."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give a count (3) or a comma list (0,1,2)") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds {text!r}: give at least one seed, distinct and non-negative")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paper", choices=["chung"], help="which paper: chung (Weight Maximization, AAAI 2022)")
    parser.add_argument("--task", choices=TASK_NAMES, default="multiplexer")
    parser.add_argument("--methods", default=None,
                        help="comma list (default: all of the task's Table 1 rows): weight_max, weight_max_traces, "
                             "reinforce, reinforce_thomas, ste, backprop")
    parser.add_argument("--seeds", default="3", help="a count (3 = seeds 0,1,2) or a comma list; run as one batch")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per seed (overrides --budget)")
    parser.add_argument("--budget", choices=["quick", "paper"], default="paper",
                        help="quick: a few episodes (tests); paper: the paper's episode counts (default)")
    parser.add_argument("--out", default=None, help="output folder (default results/chung/TASK)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--check", action="store_true", help="fail (exit 1) when a learning-quality target is missed")
    parser.add_argument("--norm-p", type=float, default=2.0, help="Weight Max: L^p norm of the outgoing weights")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="Weight Max: weight decay c (adds -2cW)")
    parser.add_argument("--explore-prob", type=float, default=0.1,
                        help="REINFORCE with Thomas (2011): probability that a hidden unit explores at a step")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import platform
    import sys
    import time
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from marl_net.reproduce import check, chung, report
    from marl_net.reproduce.methods import RuleOptions, parse_methods

    try:
        task = chung.get_task(args.task)
        methods = parse_methods(args.methods) if args.methods else chung.default_methods(task)
        seeds = parse_seeds(args.seeds)
        episodes = chung.episodes_for(task, args.budget, args.episodes)
        if args.threads < 1:
            raise ValueError(f"--threads {args.threads}: give at least 1")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device here; use --device cpu")
        if task.env_id is None:
            bad = [m.name for m in methods if m.multi_step_only]
            if bad:
                raise ValueError(f"{bad} need multi-step episodes (paper: n.a. on the multiplexer); drop them from --methods")
        opts = RuleOptions(gamma=task.gamma, lam=task.trace_lambda, norm_p=args.norm_p,
                           weight_decay=args.weight_decay, explore_prob=args.explore_prob)
    except ValueError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"marl-net reproduce: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out = Path(args.out or f"results/chung/{task.name}")

    meta = {
        "paper": "chung",
        "task": task.name,
        "env_id": task.env_id,
        "methods": [m.name for m in methods],
        "seeds": seeds,
        "episodes": episodes,
        "budget": args.budget if args.episodes is None else "custom",
        "device": args.device,
        "options": vars(opts),
        "torch_threads": args.threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": __import__("os").cpu_count(), "torch": torch.__version__},
        "command": "marl-net " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("marl-net") else None,
    }
    rows = []
    for method in methods:
        bar = tqdm(total=episodes, desc=f"{task.name}/{method.name}", unit="ep", disable=args.no_progress,
                   mininterval=2.0)

        def progress(done: int, recent: float, bar=bar) -> None:
            bar.set_postfix(recent_return=f"{recent:.3g}", refresh=False)
            bar.update(done - bar.n)

        try:
            row = chung.run_method(task, method, seeds, episodes, opts, device=args.device, on_progress=progress)
        except ValueError as exc:
            if getattr(args, "debug", False):
                raise
            print(f"marl-net reproduce: {exc}", file=sys.stderr)
            return 2
        finally:
            bar.close()
        rows.append(row)
        # written after every method, so a long run keeps what it has finished
        meta["written_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta["methods_done"] = [r["method"] for r in rows]
        paths = report.write_all(out, meta, rows, window=task.smooth, tensorboard_rows=[row])
        print(f"{method.label}: {row['mean']:.3f} +- {row['std']:.3f} over {len(seeds)} seeds "
              f"({row['wall_s']:.1f} s, {row['wall_s_per_1000_episodes']:.2f} s per 1,000 episodes)", flush=True)

    print(report.table_markdown(task.name, rows))
    print(f"wrote {paths['json']}, {paths['table']}, {paths['png']}, {paths['tb']}/")
    if args.check:
        checks = check.check_results(task.name, rows, task.paper_episodes)
        for c in checks:
            print(c.line())
        if not all(c.passed for c in checks):
            return 1
    return 0
