"""``marl-net report RUN_DIR``: a rule-ladder run's table and figures, rewritten from its results.json.

    marl-net report results/main                   # RUN_DIR/table.md and RUN_DIR/curves_LEVEL.png
    marl-net report results/main --out docs/img    # the same files, written elsewhere

``marl-net run`` writes the same files at the end of a run (``marl_net.report``); this command
regenerates them from ``RUN_DIR/results.json`` alone (its ``levels`` and ``heldout`` sections: the
held-out mean curves and final losses), without training or evaluating anything.
"""

from __future__ import annotations

import json
from pathlib import Path

HELP = "rewrite a rule-ladder run's table.md and curves_LEVEL.png from its results.json"


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="an output directory of `marl-net run` (it holds results.json)")
    p.add_argument("--out", default=None, help="where to write table.md and the figures (default: RUN_DIR)")


def load_ladder_results(run_dir: Path) -> dict:
    """``run_dir/results.json`` of a rule-ladder run; ValueError naming the fix for anything else."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise ValueError(f"{path} does not exist: give an output directory of `marl-net run` (it holds results.json)")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}): rerun `marl-net run`") from None
    missing = [k for k in ("levels", "heldout") if not isinstance(results, dict) or k not in results]
    if missing:
        raise ValueError(f"{path} has no {' or '.join(repr(k) for k in missing)} section: it is not a rule-ladder "
                         "results.json; give an output directory of `marl-net run`")
    return results


def main(args) -> int:
    from marl_net.report import write_table_and_figures

    results = load_ladder_results(Path(args.run_dir))
    for path in write_table_and_figures(Path(args.out or args.run_dir), results):
        print(f"wrote {path}")
    return 0
