"""Reward schemes compared: one Tune launch grid-searching the schemes, then a held-out table.

Run::

    python experiments/reward_schemes.py [--config experiments/configs/fast_reward_schemes.yaml]
                                         [--set stop.training_iteration=60] [--episodes 64] [--out results/reward_schemes]

It launches the config with ``marl-net tune``'s machinery (one fast-path trial per scheme, the
same budget for each), loads every trial's final checkpoint, rolls the trained rule on held-out
teacher-student tasks (teachers never seen in training; the same tasks and minibatches for every
scheme) and ends with a markdown table of the held-out final loss per scheme, written to
``OUT/table.md`` and ``OUT/results.json``. Expect every scheme to lower the loss of an untrained
rule; which one is best is what the table is for. Raises if a trial errored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from marl_net import numerics
from marl_net.commands.tune import init_ray, run_launch
from marl_net.config import EnvConfig
from marl_net.evaluation import rollout_losses
from marl_net.experiment import load_launch
from marl_net.fast.tune_trainable import trainer_from_launch
from marl_net.results import summarize

HERE = Path(__file__).resolve().parent


def heldout_curves(config: dict, checkpoint, episodes: int, seed: int) -> tuple[str, torch.Tensor]:
    trainer = trainer_from_launch(config)
    with checkpoint.as_directory() as directory:
        trainer.restore(directory)
    env = EnvConfig.from_kwargs(**{**config["env"], "split": "heldout"})
    with torch.no_grad():
        return env.reward, rollout_losses(trainer.policy.eval(), env, episodes, seed=seed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(HERE / "configs" / "fast_reward_schemes.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--episodes", type=int, default=64, help="held-out networks per scheme (default 64)")
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the held-out tasks")
    parser.add_argument("--out", default="results/reward_schemes")
    args = parser.parse_args(argv)

    launch = load_launch(args.config, args.overrides)
    init_ray()
    grid = run_launch(launch)
    curves = dict(heldout_curves(r.config, r.checkpoint, args.episodes, args.seed) for r in grid)
    rows = {scheme: summarize(c.float()) for scheme, c in sorted(curves.items())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Held-out teacher-student, {args.episodes} networks, {launch['stop']} per scheme "
             f"(`python experiments/reward_schemes.py`)", "",
             "| reward scheme | initial loss | final loss (mean +- std) | AUC |", "|---|---|---|---|"]
    for scheme, e in rows.items():
        lines.append(f"| {scheme} | {e['initial_loss_mean']:.4f} | {e['final_loss_mean']:.4f} +- "
                     f"{e['final_loss_std']:.4f} | {e['auc_mean']:.4f} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"launch": launch, "heldout": rows,
                                                   "numerics": numerics.describe("cpu")},  # the evaluation's
                                                  indent=1, default=str) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
