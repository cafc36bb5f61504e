"""``marl-net``: the command line.

Each subcommand lives in its own module under ``marl_net.commands`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported
only when their subcommand runs, so ``marl-net schemes`` does not pay for importing Ray.

Bad input is answered with one line on stderr, ``marl-net COMMAND: <what is wrong and the fix>``,
and exit status 2 (as argparse answers a malformed command line): every subcommand's
ValueError, KeyError or FileNotFoundError is taken as bad input (the library raises them, naming
the fix, for bad settings, files and checkpoints). ``--debug`` (before or after the subcommand)
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "run": ("marl_net.commands.run", "the rule ladder: meta-learn a rule per information level, compare with its hand rules, SGD, Adam (the main job)"),
    "report": ("marl_net.commands.report", "rewrite a rule-ladder run's table.md and curves_LEVEL.png from its results.json"),
    "check": ("marl_net.commands.check", "check the rule ladder's targets on one run, or on the median of several seeds' runs"),
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
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_line) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        p.set_defaults(_module=module)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error instead of one line")
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
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except BAD_INPUT as exc:
        if args.debug:
            raise
        print(f"marl-net {args.command}: {error_line(exc)}", file=sys.stderr)
        return 2


# What the library raises, naming the fix, for bad settings, files and checkpoints.
BAD_INPUT = (ValueError, KeyError, FileNotFoundError)


def error_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a KeyError's without the quotes ``str`` adds; a missing
    file's with its name), ending with a pointer to ``--debug``."""
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    elif isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in str(exc):
        text = f"{exc.strerror or exc}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split()) + " (--debug shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
