"""The rule ladder's report: ``table.md``, one learning-curve figure per level, TensorBoard logs.

``table.md`` has one section per level: for every held-out setting, the learned rule, its own
baselines, SGD and Adam, with the final loss (mean +- std over networks), the test accuracy on
classification settings, and the ratios of the final loss to the best of the level's own
baselines and to the best of SGD and Adam. ``curves_LEVEL.png`` shows the same rules' mean loss
curves, one panel per setting. TensorBoard: ``RUN_DIR/tb/heldout/<task>/<rule>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from marl_net.levels import GRADIENT_METHODS, LEVELS
from marl_net.results import edges_by_setting
from marl_net.rules.tuning import EXTEND


def _best(by_rule: Mapping, rules) -> float | None:
    finals = [by_rule[r]["final_loss_mean"] for r in rules if r in by_rule]
    return min(finals) if finals else None


def level_rules(level: str, by_rule: Mapping) -> list[str]:
    """The rules of ``level``'s rows present in ``by_rule``: the learned rule, its baselines, SGD, Adam."""
    lv = LEVELS[level]
    return [r for r in (lv.learned, *lv.compared_with) if r in by_rule]


def table(results: Mapping) -> str:
    """The markdown ladder table of results.json's ``heldout`` section."""
    lines = []
    for level in results.get("levels", {}):
        lv = LEVELS[level]
        own = "/".join(lv.baselines)
        lines += [f"### {level}: {lv.description}", "",
                  f"| setting | rule | final loss (mean +- std) | test accuracy | / best of {own} | / best of SGD/Adam |",
                  "|---|---|---|---|---|---|"]
        for task, by_rule in results["heldout"].items():
            own_best, gm_best = _best(by_rule, lv.baselines), _best(by_rule, GRADIENT_METHODS)
            for rule in level_rules(level, by_rule):
                e = by_rule[rule]
                acc = f"{100 * e['test_accuracy_mean']:.1f} %" if "test_accuracy_mean" in e else "-"
                r1 = f"{e['final_loss_mean'] / own_best:.2f}" if own_best else "-"
                r2 = f"{e['final_loss_mean'] / gm_best:.2f}" if gm_best else "-"
                name = f"**{rule}**" if rule == lv.learned else rule
                lines.append(f"| {task} | {name} | {e['final_loss_mean']:.4f} +- {e['final_loss_std']:.4f} | {acc} | "
                             f"{r1} | {r2} |")
        lines.append("")
    note = edge_note(results.get("networks", {}))
    return "\n".join(lines + ([note, ""] if note else []))


def edge_note(networks: Mapping) -> str:
    """A line naming the rules whose step size tuned to an end of the values tried, per setting
    (``networks[TASK]["tuned_at_grid_edge"]``), or "" when none did."""
    edges = edges_by_setting(networks)
    if not edges:
        return ""
    return (f"Tuned to the smallest or largest step size tried (the grid and up to {EXTEND} values past each "
            f"end; the best may lie beyond): {edges}.")


def setting_table(by_rule: Mapping, steps: Mapping, learned: str, networks: Mapping | None = None) -> str:
    """The markdown table of one setting's rules (``marl-net eval``): the tuned step size, final
    loss, test accuracy, and the final loss over the best hand rule's; then :func:`edge_note` of
    ``networks``."""
    hand = [r for r in by_rule if r != learned]
    best = _best(by_rule, hand)
    lines = ["| rule | step size | final loss (mean +- std) | test accuracy | / best hand rule |", "|---|---|---|---|---|"]
    for rule, e in by_rule.items():
        acc = f"{100 * e['test_accuracy_mean']:.1f} %" if "test_accuracy_mean" in e else "-"
        ratio = f"{e['final_loss_mean'] / best:.2f}" if best else "-"
        lines.append(f"| {rule} | {steps.get(rule, float('nan')):.4g} | {e['final_loss_mean']:.4f} +- {e['final_loss_std']:.4f} | "
                     f"{acc} | {ratio} |")
    note = edge_note(networks or {})
    return "\n".join(lines + (["", note] if note else [])) + "\n"


def _panel(ax, title: str, by_rule: Mapping, rules) -> None:
    import numpy as np

    for rule in rules:
        mean = np.asarray(by_rule[rule]["curve_mean"])
        ax.plot(np.arange(len(mean)), np.clip(mean, 1e-12, None), label=rule,
                linewidth=2 if rule.startswith("learned") else 1)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("weight updates")


def _figure(panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels + 0.8, 3.4), squeeze=False)
    axes[0][0].set_ylabel("held-out loss (mean over networks)")
    return plt, fig, axes[0]


def plot_level(path: Path, level: str, heldout: Mapping) -> None:
    """One figure for ``level``: a panel per setting with its rules' mean loss curves (log scale)."""
    plt, fig, axes = _figure(len(heldout))
    for ax, (task, by_rule) in zip(axes, heldout.items()):
        _panel(ax, task, by_rule, level_rules(level, by_rule))
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{level} level: {LEVELS[level].description}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_setting(path: Path, title: str, by_rule: Mapping) -> None:
    """One setting's rules' mean loss curves (``marl-net eval``)."""
    plt, fig, axes = _figure(1)
    _panel(axes[0], title, by_rule, list(by_rule))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_table_and_figures(out: Path, results: Mapping) -> list[Path]:
    """``table.md`` and ``curves_LEVEL.png`` of a ladder's results.json content, written to ``out``
    (``marl-net run`` and ``marl-net report``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table(results))
    written = [out / "table.md"]
    for level in results.get("levels", {}):
        plot_level(out / f"curves_{level}.png", level, results["heldout"])
        written.append(out / f"curves_{level}.png")
    return written


def write_report(out: Path, results: Mapping, curves: Mapping) -> list[Path]:
    """results.json, table.md, curves_LEVEL.png and TensorBoard logs of the held-out curves."""
    from marl_net.results import build_results, write_tensorboard

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    written = [out / "results.json", *write_table_and_figures(out, results)]
    for task, by_rule in curves.items():
        first = next(iter(by_rule.values()))
        per_task = build_results(task, first.shape[1] - 1, list(range(first.shape[0])),
                                 {r: c.float() for r, c in by_rule.items()})
        write_tensorboard(out / "tb" / "heldout" / task, per_task)
    return written
