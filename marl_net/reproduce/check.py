"""Learning-quality targets for the Chung reproduction; a missed target fails the run.

Targets (at the paper's budget, at least 3 seeds):
- CartPole: Weight Max averages at least 303 over all 1,000 episodes (paper: 390.38, std 43.25)
  and beats REINFORCE (paper: 163.92).
- Multiplexer: Weight Max beats REINFORCE by at least 0.3 in average reward over 800,000 episodes
  (paper: 0.81 against 0.29).

``marl-net reproduce chung --task cartpole --methods weight_max,reinforce --seeds 3 --check`` runs one
task and checks it; ``python -m marl_net.reproduce.check --out DIR`` runs both tasks;
``python -m marl_net.reproduce.check --results A/results.json B/results.json`` checks finished runs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

MIN_SEEDS = 3
CARTPOLE_MIN_WEIGHT_MAX = 303.0
MULTIPLEXER_MIN_MARGIN = 0.3


@dataclass
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.name}: {self.detail}"


def _rows_needed(rows: dict, paper_episodes: int) -> list[Check]:
    out = []
    for name in ("weight_max", "reinforce"):
        r = rows.get(name)
        if r is None:
            out.append(Check(f"{name} ran", False, f"add {name} to --methods"))
            continue
        if len(r["seeds"]) < MIN_SEEDS:
            out.append(Check(f"{name} seeds", False, f"{len(r['seeds'])} seeds; run --seeds {MIN_SEEDS} or more"))
        if r["episodes"] < paper_episodes:
            out.append(Check(f"{name} budget", False,
                             f"{r['episodes']} episodes; the target is for {paper_episodes} (--budget paper)"))
    return out


def check_results(task: str, results: list[dict], paper_episodes: int) -> list[Check]:
    """Targets for ``task`` given the per-method summaries of :func:`marl_net.reproduce.chung.run_method`."""
    rows = {r["method"]: r for r in results}
    checks = _rows_needed(rows, paper_episodes)
    if "weight_max" not in rows or "reinforce" not in rows:
        return checks
    wm, rf = rows["weight_max"], rows["reinforce"]
    if task == "cartpole":
        checks.append(Check("Weight Max average return >= 303", wm["mean"] >= CARTPOLE_MIN_WEIGHT_MAX,
                            f"{wm['mean']:.2f} (std {wm['std']:.2f}); paper 390.38 (43.25)"))
        checks.append(Check("Weight Max beats REINFORCE", wm["mean"] > rf["mean"],
                            f"{wm['mean']:.2f} vs {rf['mean']:.2f}; paper 390.38 vs 163.92"))
    elif task == "multiplexer":
        margin = wm["mean"] - rf["mean"]
        checks.append(Check(f"Weight Max beats REINFORCE by >= {MULTIPLEXER_MIN_MARGIN}",
                            margin >= MULTIPLEXER_MIN_MARGIN,
                            f"{wm['mean']:.3f} vs {rf['mean']:.3f} (margin {margin:.3f}); paper 0.81 vs 0.29"))
    else:
        checks.append(Check(f"targets for {task}", False, "targets exist for cartpole and multiplexer only"))
    return checks


def check_files(paths: list[str]) -> list[Check]:
    """Targets over results.json files of separate runs (e.g. one method per process), grouped by task."""
    import json

    from marl_net.reproduce.chung import get_task

    by_task: dict[str, list[dict]] = {}
    for path in paths:
        payload = json.loads(open(path).read())
        by_task.setdefault(payload["task"], []).extend(payload["results"])
    checks = []
    for task, rows in by_task.items():
        checks += [Check(f"{task}: {c.name}", c.passed, c.detail)
                   for c in check_results(task, rows, get_task(task).paper_episodes)]
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chung reproduction targets: run CartPole and the multiplexer "
                                     "at the paper's budget and check them, or check existing results.json files.")
    parser.add_argument("--results", nargs="+", default=None, help="check these results.json files instead of running")
    parser.add_argument("--out", default="results/chung_check")
    parser.add_argument("--seeds", default="3")
    parser.add_argument("--tasks", default="cartpole,multiplexer")
    args = parser.parse_args(argv)
    if args.results:
        checks = check_files(args.results)
        for c in checks:
            print(c.line())
        return 0 if checks and all(c.passed for c in checks) else 1
    from marl_net.cli import main as cli_main

    status = 0
    for task in args.tasks.split(","):
        rc = cli_main(["reproduce", "chung", "--task", task, "--methods", "weight_max,reinforce", "--seeds",
                       args.seeds, "--budget", "paper", "--check", "--out", f"{args.out}/{task}"])
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
