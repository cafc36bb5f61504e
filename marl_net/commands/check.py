"""``marl-net check RUN_DIR [RUN_DIR ...]``: the rule ladder's targets (``marl_net.targets``).

With one folder, the targets of that run; with several (``marl-net check runs/s0 runs/s1 runs/s2
runs/s3``: four meta-training seeds), each target on the median of the runs' values. Prints every
target with its figures and exits 1 when any is missed (a benchmark, not a test); targets whose
figures the results lack (a level or setting this build could not run) are listed as SKIP.
"""

from __future__ import annotations

HELP = "check the rule ladder's targets on one run's results.json, or on the median of several (exit 1 when missed)"


def add_arguments(parser) -> None:
    parser.add_argument("results", nargs="+", help="`marl-net run` output folders (or their results.json)")


def read_run(text: str) -> dict:
    import json
    from pathlib import Path

    path = Path(text)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():  # bad input: one line and exit status 2 (marl_net.cli)
        raise FileNotFoundError(f"{path} does not exist; run `marl-net run --out DIR` first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc}); pass a `marl-net run` output folder") from None
    if not isinstance(results, dict) or "heldout" not in results or "levels" not in results:
        raise ValueError(f"{path} is not a results.json of the rule ladder (`marl-net run`): no 'heldout'/'levels'")
    return results


def main(args) -> int:
    from marl_net.observations import is_privileged
    from marl_net.targets import median_targets, targets

    runs = [read_run(r) for r in args.results]  # bad input: one line and exit 2 (marl_net.cli)
    for path, results in zip(args.results, runs):
        for level, entry in results["levels"].items():
            privileged = [n for n in entry.get("observations", []) if is_privileged(n)]
            if privileged and level != "gradient":
                print(f"note: {path}: level {level} observed privileged features {privileged}")
    checked, skipped = targets(runs[0]) if len(runs) == 1 else median_targets(runs)
    where = "" if len(runs) == 1 else f" (median of {len(runs)} runs)"
    for t in checked:
        values = f" from {', '.join(f'{v:.3g}' for v in t['values'])}" if "values" in t else ""
        note = f" (vacuous: {t['vacuous']})" if t.get("vacuous") else ""
        if t.get("vacuous_runs") and not t.get("vacuous"):
            note = f" (runs {t['vacuous_runs']} left out: their baseline did not learn)"
        print(f"[{'PASS' if t['met'] else 'FAIL'}] {t['name']}{where}: {t['value']:.4g} {t['op']} {t['bound']:g}{values}"
              f"{note}")
    for t in skipped:
        print(f"[SKIP] {t['name']}: {t['reason']}")
    return 0 if all(t["met"] for t in checked) else 1
