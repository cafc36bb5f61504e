"""The rule ladder's targets, computed from a results.json (``marl-net check``), and their median
over several seeds' runs.

Each target is ``{"name", "value", "op", "bound", "met"}`` with ``met = value op bound``:

- ``feedback``: final loss / the better of tuned SGD and Adam <= 1.0 on ``teacher_student`` and
  ``teacher_student_wide``; final loss / DFA's <= 0.8 on every held-out setting; on the
  classification settings test accuracy - DFA's >= 0 and the better of SGD's and Adam's - its own
  <= 0.03 (3 points), differences rounded to 1e-6 so that float rounding does not break a tie;
- ``gradient``: final loss / the better of SGD and Adam <= 0.8 on ``teacher_student`` and
  ``teacher_student_wide``, <= 1.0 on the other settings;
- ``perturbation``: final loss / the better of NP and WP <= 0.7 on ``teacher_student``;
- ``teacher_student_long``: every learned rule's final loss is finite and / its level's best
  baseline <= 1.5;
- the default budget's whole run (``seconds``) <= 900 s.

A ratio against baselines that did not learn is no evidence: where every baseline of a ratio
target ended at a mean final loss at or above its mean initial loss (a step size tuned on the
train split that diverged on some held-out networks), the target is *vacuous*: it carries
``"vacuous": REASON`` and is not met, whatever its value. A target whose figures a results.json
lacks (a level, rule or setting not run) is listed in ``skipped`` with the reason, not counted
as met or missed. :func:`median_targets` takes each target's median value over several runs
(``marl-net check DIR0 DIR1 DIR2 DIR3``: four seeds), leaving out the runs where it is vacuous.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterator, Mapping, Sequence

from marl_net.levels import GRADIENT_METHODS, LEVELS
from marl_net.suite import SUITE

RUN_SECONDS = 900.0  # make run (the default budget) from a fresh clone: at most 15 minutes
ACCURACY_POINTS = 0.03  # "within 3 points": test accuracy is a fraction in [0, 1]
# accuracy differences are rounded to 1e-6, far below one test sample's weight in a mean accuracy
# (1 / (networks x test samples): 1.7e-4 on digits_wide's 16 networks) and far above float rounding
ACCURACY_DECIMALS = 6


class Missing(Exception):
    """A figure a target needs is not in the results."""


def _final(heldout: Mapping, task: str, rule: str) -> float:
    try:
        return float(heldout[task][rule]["final_loss_mean"])
    except KeyError:
        raise Missing(f"no {rule} on {task}") from None


def _accuracy(heldout: Mapping, task: str, rule: str) -> float:
    try:
        return float(heldout[task][rule]["test_accuracy_mean"])
    except KeyError:
        raise Missing(f"no test accuracy of {rule} on {task}") from None


def _points(a: float, b: float) -> float:
    """``a - b`` of two mean test accuracies, rounded to ``ACCURACY_DECIMALS`` decimals: two means of
    different networks' accuracies that count the same correct test samples differ by float
    rounding only (a few 1e-9), and such a tie is a tie."""
    return round(a - b, ACCURACY_DECIMALS) + 0.0  # (+ 0.0: no -0)


def _unlearned(heldout: Mapping, task: str, baselines: Sequence[str]) -> str | None:
    """Why a ratio over ``baselines`` on ``task`` is vacuous (every baseline ended at or above its
    initial loss, NaN included), or None."""
    failed = []
    for rule in baselines:
        entry = heldout.get(task, {}).get(rule, {})
        final, initial = entry.get("final_loss_mean"), entry.get("initial_loss_mean")
        if final is None or initial is None or float(final) < float(initial):
            return None  # it learned (or results too old to tell)
        failed.append(f"{rule} {float(final):.4g} >= initial {float(initial):.4g}")
    return f"no baseline learned on {task} ({'; '.join(failed)}: diverged on some networks)"


def _best_final(heldout: Mapping, task: str, rules: Sequence[str]) -> float:
    return min(_final(heldout, task, r) for r in rules)


def _ratio(heldout: Mapping, task: str, rule: str, baselines: Sequence[str]) -> float:
    learned = _final(heldout, task, rule)
    return learned / _best_final(heldout, task, baselines) if math.isfinite(learned) else math.inf


def _specs(results: Mapping) -> Iterator[tuple[str, str, float, object, tuple[str, str] | None]]:
    """(name, op, bound, a function of heldout -> value, (task, baselines) of a ratio target or
    None) of every target."""
    h_tasks = [t for t in SUITE if t != "teacher_student_long"]
    gm = "/".join(GRADIENT_METHODS)
    for task in ("teacher_student", "teacher_student_wide"):
        yield (f"feedback/{task}: learned / best of {gm}", "<=", 1.0,
               lambda h, t=task: _ratio(h, t, "learned_feedback", GRADIENT_METHODS), (task, GRADIENT_METHODS))
    for task in h_tasks + ["teacher_student_long"]:
        yield (f"feedback/{task}: learned / dfa", "<=", 0.8,
               lambda h, t=task: _ratio(h, t, "learned_feedback", ("dfa",)), (task, ("dfa",)))
    for task in (t for t, s in SUITE.items() if s.classification):
        yield (f"feedback/{task}: test accuracy learned - dfa", ">=", 0.0,
               lambda h, t=task: _points(_accuracy(h, t, "learned_feedback"), _accuracy(h, t, "dfa")), None)
        yield (f"feedback/{task}: test accuracy best of {gm} - learned", "<=", ACCURACY_POINTS,
               lambda h, t=task: _points(max(_accuracy(h, t, r) for r in GRADIENT_METHODS),
                                         _accuracy(h, t, "learned_feedback")), None)
    for task in SUITE:
        bound = 0.8 if task in ("teacher_student", "teacher_student_wide") else 1.0
        yield (f"gradient/{task}: learned / best of {gm}", "<=", bound,
               lambda h, t=task: _ratio(h, t, "learned_gradient", GRADIENT_METHODS), (task, GRADIENT_METHODS))
    yield ("perturbation/teacher_student: learned / best of np/wp", "<=", 0.7,
           lambda h: _ratio(h, "teacher_student", "learned_perturbation", ("np", "wp")),
           ("teacher_student", ("np", "wp")))
    for name, level in LEVELS.items():
        yield (f"{name}/teacher_student_long: learned / best of {'/'.join(level.baselines)} (finite)", "<=", 1.5,
               lambda h, lv=level: _ratio(h, "teacher_student_long", lv.learned, lv.baselines),
               ("teacher_student_long", level.baselines))


def _met(value: float, op: str, bound: float) -> bool:
    if not math.isfinite(value):
        return False
    return value <= bound if op == "<=" else value >= bound


def targets(results: Mapping) -> tuple[list[dict], list[dict]]:
    """(the targets results.json's figures allow, the skipped ones with the reason)."""
    if results.get("family") == "rl":  # marl-net run --family rl: its own targets
        from marl_net.rl_job import targets as rl_targets

        return rl_targets(results)
    heldout = results.get("heldout") or {}
    out, skipped = [], []
    for name, op, bound, fn, ratio_of in _specs(results):
        try:
            value = float(fn(heldout))
        except Missing as exc:
            skipped.append({"name": name, "reason": str(exc)})
            continue
        target = {"name": name, "value": value, "op": op, "bound": bound, "met": _met(value, op, bound)}
        vacuous = _unlearned(heldout, *ratio_of) if ratio_of else None
        if vacuous:
            target.update(met=False, vacuous=vacuous)
        out.append(target)
    seconds = results.get("seconds")
    default_budget = (results.get("budget") or {}).get("name") == "default"
    if default_budget and results.get("learned_from"):
        skipped.append({"name": "make run (default budget): seconds",
                        "reason": f"the learned rules came from {results['learned_from']}: no meta-training ran"})
    elif default_budget and seconds is not None:
        out.append({"name": "make run (default budget): seconds", "value": float(seconds), "op": "<=",
                    "bound": RUN_SECONDS, "met": float(seconds) <= RUN_SECONDS})
    return out, skipped


def median_targets(runs: Sequence[Mapping]) -> tuple[list[dict], list[dict]]:
    """Each target's median value over ``runs`` (several seeds' results), checked against its bound;
    a target is kept only where every run has its figures; runs where it is vacuous are left out of
    its median (``"vacuous_runs"``: their indices), and it is vacuous where it is in every run."""
    per_run = [targets(r) for r in runs]
    names = [t["name"] for t in per_run[0][0]]
    out, skipped = [], list(per_run[0][1])
    for name in names:
        found = [next((t for t in ts if t["name"] == name), None) for ts, _ in per_run]
        if any(t is None for t in found):
            skipped.append({"name": name, "reason": "not every run has its figures"})
            continue
        values = [t["value"] for t in found]
        vacuous = [i for i, t in enumerate(found) if t.get("vacuous")]
        counted = [v for i, v in enumerate(values) if i not in vacuous]
        op, bound = found[0]["op"], found[0]["bound"]
        value = statistics.median(counted) if counted else statistics.median(values)
        target = {"name": name, "value": value, "op": op, "bound": bound,
                  "met": bool(counted) and _met(value, op, bound), "values": values}
        if vacuous:
            target["vacuous_runs"] = vacuous
            if not counted:
                target["vacuous"] = found[0]["vacuous"]
        out.append(target)
    return out, skipped
