"""torch.compile (inductor, CPU) against the hand-written policy kernel, end to end on fast PPO.

    python experiments/compile_vs_kernel.py            # the benchmark's fast-PPO setting, 5 rounds
    python experiments/compile_vs_kernel.py --quick    # a smoke run (figures not meaningful)
    python experiments/compile_vs_kernel.py --threads 2 --rounds 7

Fast PPO (``marl_net.fast.ppo``) runs its policy three ways, in ONE process, on the setting of
``marl-net bench throughput`` (its ``THROUGHPUT`` launch and the ``fast_ppo`` sizes, and again with
the ``deep_policy`` the shipped configs use):

- ``kernel``: the hand-written C++ kernel (``policies/synapse_kernel.cpp`` through
  ``policies/fused_actor_critic.py``): acting, and PPO's minibatch forward + loss gradient + backward;
- ``torch``: the same policy in plain torch (``MARL_NET_FUSED=0``);
- ``compiled``: the torch path with ``torch.compile`` (inductor) on the policy's forward (acting,
  ``SynapsePolicy.__call__``) and on PPO's minibatch step (``FastPPO._minibatch`` + ``_losses``:
  gather, forward, log-densities, entropy, value, clipped surrogate and value loss; AOTAutograd
  compiles the backward).

Each is warmed up (compilation included; its time is printed), then the three run one iteration
each in alternating rounds and each rate is the median over rounds (on a shared machine the load
changes by the minute; alternating puts all three under the same load). Printed: agent-steps/s
end to end, collection and learning microseconds per agent-step, the ratio of each to the kernel,
and whether the compiled path comes within 1.25x of the kernel (the issue's criterion for
retiring the kernel). Exits 1 if compilation fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from marl_net.commands.bench import FULL, QUICK, THROUGHPUT, FastPPORun, machine_description
from marl_net.commands.bench import _fused_kernel as kernel_on  # on: the fused kernel; off: MARL_NET_FUSED=0

KINDS = ("kernel", "torch", "compiled")
WITHIN = 1.25  # the compiled path within this factor of the kernel's agent-steps/s: retiring it is indicated


def compile_trainer(trainer) -> None:
    """torch.compile the policy's forward (acting) and PPO's minibatch step (learning) of ``trainer``."""
    trainer.policy.compile()
    trainer._minibatch = torch.compile(trainer._minibatch)
    trainer._losses = torch.compile(trainer._losses)


def build(kind: str, policy: dict, settings: dict, warmups: int) -> tuple[FastPPORun, float]:
    """A fast-PPO run of ``kind``, warmed up; returns it and the warm-up seconds (compilation included)."""
    start = time.perf_counter()
    with kernel_on(kind == "kernel"):
        run = FastPPORun(policy, settings, "cpu")  # runs one warm-up iteration
        if kind == "compiled":
            compile_trainer(run.trainer)
            for _ in range(warmups):  # compile, then recompile for the minibatches' other sizes
                run.run()
        run.seconds.clear()
        run.phases.clear()
    return run, time.perf_counter() - start


def measure(name: str, policy: dict, settings: dict, rounds: int, warmups: int) -> dict[str, dict[str, float]]:
    runs, warm = {}, {}
    for kind in KINDS:
        runs[kind], warm[kind] = build(kind, policy, settings, warmups)
    for _ in range(rounds):
        for kind in KINDS:
            with kernel_on(kind == "kernel"):
                runs[kind].run()
    out = {kind: {**run.summary(), "warmup_s": warm[kind]} for kind, run in runs.items()}
    base = out["kernel"]["agent_steps_per_s"]
    print(f"\n{name}: policy {policy}, {settings['copies']} copies x {settings['rollout_steps']} steps, "
          f"minibatch {settings['minibatch_size']}, {rounds} alternating rounds (medians)")
    print(f"{'':10s} {'agent-steps/s':>14s} {'x kernel':>9s} {'collect us/step':>16s} {'learn us/step':>14s} "
          f"{'warm-up s':>10s}")
    for kind, r in out.items():
        print(f"{kind:10s} {r['agent_steps_per_s']:14.0f} {r['agent_steps_per_s'] / base:9.2f} "
              f"{r['collect_us_per_agent_step']:16.3f} {r['learn_us_per_agent_step']:14.3f} {r['warmup_s']:10.1f}")
    gap = base / out["compiled"]["agent_steps_per_s"]
    verdict = "within" if gap <= WITHIN else "NOT within"
    print(f"kernel / compiled = {gap:.2f}: the compiled torch path is {verdict} {WITHIN}x of the kernel")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; --quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the benchmark)")
    parser.add_argument("--skip-deep", action="store_true", help="only the benchmark's (d) policy")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or sizes["rounds"]
    print(f"machine: {machine_description()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    fast = {k: v for k, v in sizes["fast_ppo"].items() if k != "iterations"}
    deep = {k: v for k, v in sizes["deep_policy"].items() if k not in ("rounds", "policy")}
    try:
        results = {"fast_ppo": measure("(d) fast PPO", THROUGHPUT["policy"], fast, rounds, warmups=2)}
        if not args.skip_deep:
            results["deep_policy"] = measure("deep policy", sizes["deep_policy"]["policy"], deep, rounds, warmups=2)
    except Exception as exc:  # noqa: BLE001  (inductor needs a working C++ compiler: say so and fail)
        print(f"torch.compile failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
