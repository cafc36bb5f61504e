"""Recurrent fast PPO against feed-forward fast PPO, side by side: the ``(e)/(d)`` ratio of
``marl-net bench throughput`` without the RLlib rows.

    python experiments/recurrent_speed.py                 # the benchmark's fast-PPO sizes, 3 rounds
    python experiments/recurrent_speed.py --copies 64     # smaller, quicker (ratio still side by side)

    python experiments/recurrent_speed.py --per-synapse   # also (e'), the per-synapse-row GRU (slow)

In one process, on ``marl-net bench throughput``'s ``THROUGHPUT`` launch and ``fast_ppo`` sizes,
(d) fast PPO with the feed-forward policy (the fused kernel) and (e) the same with ``RECURRENT``
(``memory="gru_neuron"``: a GRU state per neuron) each run one iteration per round, alternating
(with ``--per-synapse`` also (e'), ``PER_SYNAPSE_MEMORY``: a GRU per synapse row); printed are the
medians of agent-steps/s and of collection and learning microseconds per agent-step, and the ratio
(e)/(d) against the benchmark's target. Exits 1 when the ratio misses the target.

``--recurrence`` instead times the per-synapse-row learner's recurrence alone (forward + backward, CPU time of this
process, median of alternating rounds) at the size of one of (e)'s minibatches of the first block
(T = 20 steps, 512 rows of 16 synapses, memory 16): ``nn.GRU`` run with a ``GRUCell``'s
parameters (``torch.func.functional_call``, what ``unroll`` runs) and the GRU update stepped one
step at a time (``sequence_recurrence = False``, the learner before).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from marl_net.commands.bench import FULL, PER_SYNAPSE_MEMORY, RECURRENT, TARGETS, THROUGHPUT, FastPPORun


def recurrence(rounds: int) -> int:
    """Forward + backward of the recurrence alone, two ways (see the module docstring)."""
    import time

    from torch import nn

    from marl_net.policies.recurrent_policy import gru_update

    torch.manual_seed(0)
    steps, rows, m = 20, 512 * 16, PER_SYNAPSE_MEMORY["memory_size"]
    cell, shell = nn.GRUCell(THROUGHPUT["policy"]["hidden"], m), nn.GRU(THROUGHPUT["policy"]["hidden"], m)
    x = torch.randn(steps, rows, THROUGHPUT["policy"]["hidden"], requires_grad=True)
    h0 = torch.zeros(rows, m)
    params = {"weight_ih_l0": cell.weight_ih, "weight_hh_l0": cell.weight_hh, "bias_ih_l0": cell.bias_ih,
              "bias_hh_l0": cell.bias_hh}

    def gates():
        return nn.functional.linear(x, cell.weight_ih, cell.bias_ih)

    def stepwise():
        h, out = h0, []
        for g in gates().unbind(0):
            h = gru_update(g, h, cell)
            out.append(h)
        return torch.stack(out)

    ways = {"nn.GRU": lambda: torch.func.functional_call(shell, params, (x, h0[None]))[0],
            "stepwise": stepwise}
    reference = stepwise()
    for name, way in ways.items():
        torch.testing.assert_close(way(), reference, rtol=1e-5, atol=1e-6)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.process_time()
            way().sum().backward()
            seconds[name].append(time.process_time() - start)
    print(f"recurrence forward + backward, T={steps}, {rows} synapse rows, memory {m}, median of {rounds} rounds:")
    base = statistics.median(seconds["nn.GRU"])
    for name, s in seconds.items():
        print(f"{name:12s} {statistics.median(s) * 1e3:8.1f} ms  ({statistics.median(s) / base:.2f}x nn.GRU's)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=FULL["fast_ppo"]["copies"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-synapse", action="store_true",
                        help="add (e'): (d) with the per-synapse-row GRU (memory='gru')")
    parser.add_argument("--before", action="store_true",
                        help="add (e0): (e') with the recurrence stepped one GRU update at a time in the learner, "
                             "as before (sequence_recurrence = False)")
    parser.add_argument("--recurrence", action="store_true",
                        help="time the learner's recurrence alone two ways (see the docstring)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.recurrence:
        return recurrence(max(args.rounds, 5))
    sizes = {**FULL["fast_ppo"], "copies": args.copies}
    sizes["minibatch_size"] = FULL["fast_ppo"]["minibatch_size"] * args.copies // FULL["fast_ppo"]["copies"]
    runs = {"(d) fast_ppo": FastPPORun(THROUGHPUT["policy"], sizes, "cpu"),
            "(e) fast_ppo_recurrent": FastPPORun({**THROUGHPUT["policy"], **RECURRENT}, sizes, "cpu")}
    if args.per_synapse:
        runs["(e') per-synapse gru"] = FastPPORun({**THROUGHPUT["policy"], **PER_SYNAPSE_MEMORY}, sizes, "cpu")
    if args.before:
        runs["(e0) recurrent, stepwise"] = FastPPORun({**THROUGHPUT["policy"], **PER_SYNAPSE_MEMORY}, sizes, "cpu")
        runs["(e0) recurrent, stepwise"].trainer.policy.sequence_recurrence = False
    for _ in range(args.rounds):
        for run in runs.values():
            run.run()
    summaries = {name: run.summary() for name, run in runs.items()}
    print(f"copies {args.copies}, rounds {args.rounds}, medians, 1 torch thread")
    for name, s in summaries.items():
        print(f"{name:24s} {s['agent_steps_per_s']:10.0f} agent-steps/s  collect {s['collect_us_per_agent_step']:7.2f} us"
              f"  learn {s['learn_us_per_agent_step']:7.2f} us per agent-step")
    d, e = (s["agent_steps_per_s"] for s in list(summaries.values())[:2])
    if args.per_synapse:
        per_synapse = summaries["(e') per-synapse gru"]["agent_steps_per_s"]
        print(f"ratio (e')/(d) {per_synapse / d:.3f}")
    if args.before:
        print(f"ratio (e0)/(d) {summaries['(e0) recurrent, stepwise']['agent_steps_per_s'] / d:.3f}")
    target = TARGETS["fast_ppo_recurrent/fast_ppo"]
    print(f"ratio (e)/(d) {e / d:.3f}  (target >= {target}: {'met' if e / d >= target else 'MISSED'})")
    return 0 if e / d >= target else 1


if __name__ == "__main__":
    sys.exit(main())
