"""Outputs of a reproduction run: results.json, table.md, a learning-curve PNG, TensorBoard logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from marl_net import numerics


def block_means(returns: np.ndarray, max_points: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Episode index (block end) and per-seed means of consecutive blocks: ``[n]``, ``[E, n]``."""
    e, n = returns.shape
    block = max(1, -(-n // max_points))
    usable = (n // block) * block
    means = returns[:, :usable].reshape(e, -1, block).mean(axis=2)
    return np.arange(1, means.shape[1] + 1) * block, means


def running_average(returns: np.ndarray, window: int) -> np.ndarray:
    """Trailing running average over ``window`` episodes, ``[E, n - window + 1]``."""
    window = max(1, min(window, returns.shape[1]))
    c = np.cumsum(np.pad(returns, ((0, 0), (1, 0))), axis=1)
    return (c[:, window:] - c[:, :-window]) / window


def fmt(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 10 else f"{x:.3f}"


def table_markdown(task: str, rows: list[dict]) -> str:
    lines = [
        f"Chung (2022) Table 1, {task}: average return over all episodes (mean and std over seeds)",
        "",
        "| method | mean | std | seeds | episodes | paper mean | paper std | wall s / 1,000 episodes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = r["paper"]
        pm, ps = (fmt(paper[0]), fmt(paper[1])) if paper else ("n.a.", "n.a.")
        lines.append(f"| {r['label']} | {fmt(r['mean'])} | {fmt(r['std'])} | {len(r['seeds'])} | {r['episodes']} "
                     f"| {pm} | {ps} | {r['wall_s_per_1000_episodes']:.2f} |")
    lines += ["", "Paper: 10 runs each. Wall time: all seeds run together as one batch."]
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, task: str, rows: list[dict], window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for r in rows:
        ra = running_average(r["returns"], window)
        x = np.arange(ra.shape[1]) + min(window, r["returns"].shape[1])
        step = max(1, len(x) // 1000)
        mean, std = ra.mean(0)[::step], ra.std(0)[::step]
        ax.plot(x[::step], mean, label=r["label"])
        ax.fill_between(x[::step], mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"return (running average of {window})")
    ax.set_title(f"Chung (2022) reproduction: {task}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_tensorboard(logdir: Path, rows: list[dict]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for r in rows:
        writer = SummaryWriter(log_dir=str(logdir / r["method"]))
        try:
            x, means = block_means(r["returns"])
            for i, ep in enumerate(x):
                writer.add_scalar("charts/episode_return", float(means[:, i].mean()), int(ep))
            writer.add_scalar("charts/average_return", r["mean"], int(r["episodes"]))
            writer.add_scalar("perf/wall_s_per_1000_episodes", r["wall_s_per_1000_episodes"], int(r["episodes"]))
        finally:
            writer.close()


def summary_for_json(r: dict) -> dict:
    out = {k: v for k, v in r.items() if k != "returns"}
    x, means = block_means(r["returns"])
    out["curve"] = {"episode": x.tolist(), "mean_over_seeds": means.mean(0).tolist(),
                    "per_seed": means.tolist()}
    return out


def write_all(out: Path, meta: dict, rows: list[dict], window: int, tensorboard_rows: list[dict] | None = None
              ) -> dict[str, Path]:
    """Write every output under ``out`` (results.json, table.md and the PNG for ``rows``; TensorBoard
    logs for ``tensorboard_rows``, default all rows); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "table": out / "table.md", "png": out / "learning_curves.png",
             "tb": out / "tb"}
    payload = {**meta, "results": [summary_for_json(r) for r in rows],
               "numerics": numerics.describe(str(meta.get("device", "cpu")))}  # this process's arithmetic
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, paths["json"])
    paths["table"].write_text(table_markdown(meta["task"], rows))
    plot_curves(paths["png"], meta["task"], rows, window)
    write_tensorboard(paths["tb"], rows if tensorboard_rows is None else tensorboard_rows)
    return paths


def merge(paths: list[str], out: Path) -> str:
    """One table, plot and results.json from the results.json files of separate runs of one task
    (e.g. one method per process). Curves come from the stored block means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    payloads = [json.loads(Path(p).read_text()) for p in paths]
    tasks = {p["task"] for p in payloads}
    if len(tasks) != 1:
        raise ValueError(f"these runs are of different tasks {sorted(tasks)}; merge one task at a time")
    task = tasks.pop()
    rows = [r for p in payloads for r in p["results"]]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = table_markdown(task, rows)
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"task": task, "merged_from": list(paths), "results": rows,
                                                       "numerics": [p.get("numerics") for p in payloads]}, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for r in rows:
        x, per_seed = np.array(r["curve"]["episode"]), np.array(r["curve"]["per_seed"])
        mean, std = per_seed.mean(0), per_seed.std(0)
        ax.plot(x, mean, label=f"{r['label']} ({len(r['seeds'])} seeds)")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"return (mean of blocks of {int(x[0]) if len(x) else 1} episodes)")
    ax.set_title(f"Chung (2022) reproduction: {task}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png")
    plt.close(fig)
    return table


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Merge results.json files of separate runs of one task.")
    parser.add_argument("results", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    print(merge(args.results, Path(args.out)))
