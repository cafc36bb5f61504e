"""``marl-net check DIR``: the main job's learning-quality targets, read from DIR/results.json.

Prints each target with its figures and exits 1 when any is missed (a benchmark, not a test).
"""

from __future__ import annotations

HELP = "check the main job's learning-quality targets on a results.json (exit 1 when missed)"


def add_arguments(parser) -> None:
    parser.add_argument("results", help="a `marl-net run` output folder or its results.json")
    parser.add_argument("--ratio", type=float, default=0.8,
                        help="learned / best of NP and WP must be at most this on teacher-student (default 0.8)")


def main(args) -> int:
    import json
    from pathlib import Path

    from marl_net.main_job import check_targets, privileged_features

    path = Path(args.results)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():  # bad input: one line and exit status 2 (marl_net.cli)
        raise FileNotFoundError(f"{path} does not exist; run `marl-net run --out DIR` first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc}); pass a `marl-net run` output folder") from None
    if not isinstance(results, dict) or "heldout" not in results:
        raise ValueError(f"{path} is not a `marl-net run` results.json (no 'heldout' key)")
    privileged = privileged_features(results.get("train", {}).get("env", {}).get("observations", []))
    if privileged:
        print(f"note: the learned rule observed features the registry marks privileged: {privileged}")
    checks = check_targets(results, args.ratio)
    for name, passed, figures in checks:
        print(f"[{'PASS' if passed else 'FAIL'}] {name}: {figures}")
    return 0 if all(p for _, p, _ in checks) else 1
