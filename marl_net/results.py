"""``results.json`` of ``marl-net compare``: the format, its writer and its reader.

Other tools (the main job, plots, later comparisons) read this file, so the format is stable::

    {
      "task": "teacher_student",       # task name
      "steps": 1000,                   # weight updates per run
      "seeds": [0, 1, 2, 3, 4],        # one run (network copy) per seed
      "rules": {
        "sgd": {
          "final_loss_mean": 0.0021,   # mean over seeds of the loss after the last update
          "final_loss_std": 0.0004,    # its standard deviation over seeds (population std, ddof=0)
          "initial_loss_mean": 0.377,  # mean over seeds of the loss before any update
          "auc_mean": 0.0064,          # mean over seeds of the area under the loss curve per step:
                                       #   trapezoidal area with unit spacing / steps, i.e. the
                                       #   time-averaged loss (for steps = 0: the initial loss)
          "curve_mean": [...],         # steps + 1 values: mean over seeds of the loss after t updates
          "curve_std": [...],          # steps + 1 values: std over seeds (ddof=0)
          "test_accuracy_mean": 0.81,  # classification tasks only (digits, mnist, mnist1d,
          "test_accuracy_std": 0.02    #   multiplexer): the final network's accuracy on its
                                       #   instance's test split, which no update saw
                                       #   (marl_net.accuracy.test_accuracy), mean / std (ddof=0)
                                       #   over seeds
        },
        "np": {...}, "wp": {...}
      },
      "numerics": {...}                # the arithmetic that ran: marl_net.numerics.describe
    }                                  #   (kernel or torch, compiler flags, torch, CPU, device)

Every loss is the one ``network_weights_v0`` reports: the task loss (MSE or cross-entropy, Cai &
Cheng) of the current weights on the step's minibatch. A copy that diverged counts as the env's
``divergence_threshold`` from then on. Rules may be any names from ``marl_net.rules.registry`` or a
learned rule's name. :func:`plot_curves` and :func:`write_tensorboard` draw any such results. The settings that produced the file (layers, step sizes, ...) are written
next to it in ``config.json``, not in ``results.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import torch

RULE_KEYS = ("final_loss_mean", "final_loss_std", "initial_loss_mean", "auc_mean", "curve_mean", "curve_std")
ACCURACY_KEYS = ("test_accuracy_mean", "test_accuracy_std")  # present for classification tasks only
TOP_KEYS = ("task", "steps", "seeds", "rules")


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Time-averaged loss per curve: the trapezoidal area under ``curves [..., steps + 1]`` / steps."""
    steps = curves.shape[-1] - 1
    if steps == 0:
        return curves[..., 0]
    return torch.trapezoid(curves.double(), dim=-1).to(curves.dtype) / steps


def summarize(curves: torch.Tensor, accuracy: torch.Tensor | None = None) -> dict:
    """The per-rule entry of results.json from loss curves ``[seeds, steps + 1]`` and, for a
    classification task, the test accuracies ``[seeds]``."""
    if curves.dim() != 2 or curves.shape[1] < 1:
        raise ValueError(f"curves have shape {tuple(curves.shape)}; pass [seeds, steps + 1]")
    c = curves.double()
    entry = {
        "final_loss_mean": float(c[:, -1].mean()),
        "final_loss_std": float(c[:, -1].std(unbiased=False)),
        "initial_loss_mean": float(c[:, 0].mean()),
        "auc_mean": float(auc(c).mean()),
        "curve_mean": c.mean(0).tolist(),
        "curve_std": c.std(0, unbiased=False).tolist(),
    }
    if accuracy is not None:
        if tuple(accuracy.shape) != (curves.shape[0],):
            raise ValueError(f"accuracy has shape {tuple(accuracy.shape)}; pass one value per seed, ({curves.shape[0]},)")
        a = accuracy.double()
        entry.update(test_accuracy_mean=float(a.mean()), test_accuracy_std=float(a.std(unbiased=False)))
    return entry


def build_results(task: str, steps: int, seeds: Sequence[int], curves: Mapping[str, torch.Tensor],
                  accuracy: Mapping[str, torch.Tensor] | None = None, numerics: Mapping | None = None) -> dict:
    """results.json's content from ``{rule: curves [seeds, steps + 1]}``, for a classification
    task ``{rule: test accuracy [seeds]}`` (every rule, or none), and the numerics record
    (``marl_net.numerics.describe``; left out only by callers that embed these results in a file
    that records it, as the main job's per-task plots do)."""
    for rule, c in curves.items():
        if tuple(c.shape) != (len(seeds), steps + 1):
            raise ValueError(f"rule {rule!r}: curves have shape {tuple(c.shape)}; expected ({len(seeds)}, {steps + 1})")
    accuracy = dict(accuracy or {})
    if accuracy and set(accuracy) != set(curves):
        raise ValueError(f"accuracy is given for {sorted(accuracy)} but curves for {sorted(curves)}: give both for every rule")
    return {"task": task, "steps": int(steps), "seeds": [int(s) for s in seeds],
            "rules": {rule: summarize(c, accuracy.get(rule)) for rule, c in curves.items()},
            **({"numerics": dict(numerics)} if numerics is not None else {})}


def edges_by_setting(networks: Mapping) -> str:
    """``networks[SETTING]["tuned_at_grid_edge"]`` (a run's step sizes tuned to an end of the values
    tried) as ``"setting: rule, rule; setting: rule"``, or "" when there are none."""
    return "; ".join(f"{task}: {', '.join(n['tuned_at_grid_edge'])}" for task, n in networks.items()
                     if n.get("tuned_at_grid_edge"))


def check_results(results: dict) -> dict:
    """Raise ValueError naming the first problem if ``results`` is not in the documented format."""
    missing = [k for k in TOP_KEYS if k not in results]
    if missing:
        raise ValueError(f"results.json lacks {missing}; expected keys {list(TOP_KEYS)}")
    n = int(results["steps"]) + 1
    for rule, entry in results["rules"].items():
        lacking = [k for k in RULE_KEYS if k not in entry]
        if lacking:
            raise ValueError(f"results.json rule {rule!r} lacks {lacking}; expected {list(RULE_KEYS)}")
        for k in ("curve_mean", "curve_std"):
            if len(entry[k]) != n:
                raise ValueError(f"results.json rule {rule!r}: {k} has {len(entry[k])} points, expected steps + 1 = {n}")
        if not all(math.isfinite(float(entry[k])) for k in RULE_KEYS[:4]):
            raise ValueError(f"results.json rule {rule!r} holds a non-finite summary value")
        present = [k for k in ACCURACY_KEYS if k in entry]
        if present and len(present) != len(ACCURACY_KEYS):
            raise ValueError(f"results.json rule {rule!r} has {present} without the rest of {list(ACCURACY_KEYS)}")
        if present and not all(0.0 <= float(entry[k]) <= 1.0 for k in ACCURACY_KEYS):
            raise ValueError(f"results.json rule {rule!r}: test accuracy values must lie in [0, 1]")
    return results


def write_results(path: str | Path, results: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(check_results(results), indent=1) + "\n")
    return path


def read_results(path: str | Path) -> dict:
    """Load and check a results.json (a folder holding one is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `marl-net compare ... --out DIR` first")
    return check_results(json.loads(path.read_text()))


def plot_curves(path: str | Path, results: dict) -> None:
    """A PNG of every rule's mean loss curve with a +-1 std band over seeds (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lowest = np.inf
    for rule, entry in results["rules"].items():
        mean, std = np.asarray(entry["curve_mean"]), np.asarray(entry["curve_std"])
        steps = np.arange(len(mean))
        ax.plot(steps, mean, label=rule, linewidth=1)
        ax.fill_between(steps, np.clip(mean - std, 1e-12, None), mean + std, alpha=0.25, linewidth=0)
        lowest = min(lowest, float(mean[mean > 0].min(initial=np.inf)))
    ax.set_yscale("log")
    if np.isfinite(lowest):  # a band reaching below zero would stretch the log axis: cut it at the curves
        ax.set_ylim(bottom=lowest / 3)
    ax.set_xlabel("weight updates")
    ax.set_ylabel("minibatch loss (mean over seeds, +-1 std)")
    ax.set_title(f"{results['task']}: {len(results['seeds'])} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tensorboard(folder: str | Path, results: dict) -> None:
    """TensorBoard logs ``folder/<rule>``: ``loss/mean`` and ``loss/std`` per step, and the summary."""
    from torch.utils.tensorboard import SummaryWriter

    for rule, entry in results["rules"].items():
        with SummaryWriter(log_dir=str(Path(folder) / rule)) as writer:
            for t, (m, s) in enumerate(zip(entry["curve_mean"], entry["curve_std"])):
                writer.add_scalar("loss/mean", m, t)
                writer.add_scalar("loss/std", s, t)
            writer.add_scalar("summary/final_loss_mean", entry["final_loss_mean"], results["steps"])
            writer.add_scalar("summary/auc_mean", entry["auc_mean"], results["steps"])
