"""``marl-net``: the command line.

Each subcommand lives in its own module under ``marl_net.commands`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported
only when their subcommand runs, so ``marl-net schemes`` does not pay for importing Ray.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "run": ("marl_net.commands.run", "meta-learn a local learning rule and compare it with SGD, NP and WP (the main job)"),
    "check": ("marl_net.commands.check", "check the main job's learning-quality targets on its results.json"),
    "schemes": ("marl_net.commands.schemes", "list reward schemes, observation features and tasks"),
    "compare": ("marl_net.commands.compare", "run hand-designed rules on a task and write results.json, plots, TensorBoard logs"),
    "reproduce": ("marl_net.commands.reproduce", "reproduce a paper's experiments (chung: Weight Maximization, Table 1)"),
    "tune": ("marl_net.commands.tune", "launch a Tune experiment from a YAML config (RLlib path or fast path)"),
    "eval": ("marl_net.commands.evaluate", "evaluate a trained meta-policy checkpoint on held-out tasks"),
    "bench": ("marl_net.commands.bench", "benchmarks: throughput of the PettingZoo, RLlib and fast paths"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marl-net",
        description="Train neural networks as societies of agents: every neuron is a PettingZoo agent that "
        "controls its outgoing weights, and one policy shared by all neurons is a learned learning rule.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_line) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a subcommand not built in this checkout
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"marl-net {args.command}: not available in this build", file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
