"""Does the recurrent rule use its memory? Meta-train the feed-forward and the recurrent policy
alike on a task where the right weight change depends on the past, and compare their held-out
inner losses.

The task: one synapse (layers 1-1, a linear student starting at w ~ 0, ``init_gain`` 0.01)
regressing a random linear teacher ``y = w* x`` with ``w* ~ N(0, 1)`` drawn per inner episode.
The rule observes the weight, the loss and the loss change of the last step (``observations:
[weight, loss, loss_change]``), but not the last change of the weight (no ``prev_delta``) and no
gradient. Whether the loss went down tells which way to go only together with which way the weight
last moved, which is in the past: the target is at ``w + sqrt(loss)`` or ``w - sqrt(loss)``, and a
feed-forward rule can only guess the side (half the teachers lie on each). A rule with memory can
remember the weight before its last move and so read the sign of the gradient from the history,
then walk to the target.

It trains the feed-forward policy and each recurrent one (``--memory``: ``gru``, a GRU per
synapse row, and ``gru_neuron``, a GRU per neuron fed its synapses' pooled summary; memory size 8)
with the same fast-path PPO settings and seed for ``--iterations`` iterations, evaluates each
deterministically on held-out teachers (``marl_net.evaluation``), prints the final losses and exits
1 unless every recurrent rule's mean final loss is below ``--margin`` times the feed-forward rule's.

    python experiments/memory_check.py                  # about 20 s on one core

``tests/test_memory.py`` runs it at the defaults (seed 0). Measured on the shared 2-core AMD EPYC
(1 torch thread), 2026-12-06 ~06:00 UTC, 40 iterations, 128 held-out episodes, final loss
feed-forward / gru / gru_neuron: seed 0 0.620 / 0.333 / 0.348, seed 1 0.663 / 0.271 / 0.395,
seed 2 0.858 / 0.460 / 0.515 (no update: 0.492 at seed 0).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from marl_net.config import EnvConfig
from marl_net.evaluation import rollout_losses, sample_observations
from marl_net.fast.ppo import FastPPO, FastPPOConfig

ENV = {"task": "teacher_student", "layers": (1, 1), "task_kwargs": {"teacher_hidden": []},
       "observations": ("weight", "loss", "loss_change"), "max_cycles": 8, "action_scale": 0.25, "reward": "global_loss",
       "batch_size": 64, "init_gain": 0.01}
PPO = {"copies": 256, "num_epochs": 4, "minibatch_size": 256, "lr": 3.0e-3, "entropy_coeff": 0.0}
POLICY = {"hidden": 16, "depth": 1, "action_gain": 0.1}


def train_and_evaluate(memory: str, iterations: int, seed: int, episodes: int) -> float:
    policy = {**POLICY, "memory": memory, **({"memory_size": 8} if memory != "none" else {})}
    trainer = FastPPO(ENV, policy, FastPPOConfig(**PPO), seed=seed)
    trainer.policy.calibrate(sample_observations(trainer.policy, trainer.env.config, seed=seed))  # as launches do
    for _ in range(iterations):
        trainer.train()
    losses = rollout_losses(trainer.policy, EnvConfig.from_kwargs(**{**ENV, "split": "heldout"}), episodes,
                            seed=seed + 1000)
    return float(losses[:, -1].mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=128, help="held-out inner episodes per rule")
    parser.add_argument("--margin", type=float, default=0.8,
                        help="pass when recurrent final loss < margin * feed-forward final loss")
    parser.add_argument("--memory", nargs="+", choices=["gru", "gru_neuron"], default=["gru", "gru_neuron"],
                        help="the recurrent policies to check (each against the one feed-forward rule)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    ff = train_and_evaluate("none", args.iterations, args.seed, args.episodes)
    recurrent = {m: train_and_evaluate(m, args.iterations, args.seed, args.episodes) for m in args.memory}
    initial = float(rollout_losses(lambda obs: torch.zeros(obs.shape[:2]), EnvConfig.from_kwargs(
        **{**ENV, "split": "heldout"}), args.episodes, seed=args.seed + 1000)[:, -1].mean())
    ok = all(loss < args.margin * ff for loss in recurrent.values())
    print(f"held-out final inner loss after {ENV['max_cycles']} steps ({args.episodes} episodes, "
          f"{args.iterations} PPO iterations each, seed {args.seed}):")
    print(f"  no update (actions 0): {initial:.4f}")
    print(f"  feed-forward rule:     {ff:.4f}")
    for memory, loss in recurrent.items():
        print(f"  recurrent rule ({memory + '):':12s} {loss:.4f}   ratio {loss / ff:.2f}  target < {args.margin:.2f}  "
              f"{'met' if loss < args.margin * ff else 'MISSED'}")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
