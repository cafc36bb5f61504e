"""The part of ``marl-net bench throughput`` about fans: synapse-steps per second and peak memory of
fast PPO and of evaluation (``marl_net.evaluation.rollout_losses``) on networks whose layers have
very different fans, so that a cost that follows padding rather than synapses shows.

Rates: in one process, on the uniform 8-16-4 and 8-64-4, on 10-100-10, on Cai & Cheng's digits shape 10-1000-10
(outgoing: 1,000 hidden agents own 10 synapses each, the 10 inputs 1,000 each) and on the MNIST
size 784-1000-10 under both ownerships, each network's fast-PPO iteration and evaluation rollout
are timed in alternating rounds (medians; the same machine load for every network). A
synapse-step is one real synapse of one network copy advanced one step (padding never counts);
a fast-PPO iteration's synapse-steps are its rollout's (collection plus the learner's epochs
over it, per second of the whole iteration). Targets: on 10-1000-10 both reach at least half
their 8-64-4 rate.

Peak memory: on 784-1000-10, under both ownerships, for fast PPO (one iteration) and for
evaluation (a short rollout) at several copy counts, each in a fresh child process (peak RSS, or
peak CUDA memory on a GPU); a least-squares line through the peaks gives the memory per added
copy, and memory counts as linear in copies when every peak lies within ``LINEAR_TOLERANCE`` of
the largest peak from that line (:func:`linearity`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from marl_net.commands.measure import peak_rss_mb, sync

ENV = {"task": "teacher_student", "reward": "global_loss"}
TARGET_WIDE_OVER_UNIFORM = 0.5  # 10-1000-10 (outgoing) synapse-steps/s over 8-64-4's, fast PPO and evaluation
LINEAR_TOLERANCE = 0.075  # peaks within 7.5% (of the largest) of their least-squares line in copies

FULL = {
    "rounds": 2,
    "pair": ("8-64-4 outgoing", "10-1000-10 outgoing"),  # (uniform, wide): the target's ratio
    "policy": {"hidden": 32, "depth": 2},  # the policy the shipped configs and the main job use
    # name: layers, ownership, copies (fast PPO's copies = evaluation's networks): about 10^5
    # synapses per measurement, 794k for the MNIST-size network's single copy
    "networks": {"8-16-4 outgoing": ([8, 16, 4], "outgoing", 512), "8-64-4 outgoing": ([8, 64, 4], "outgoing", 128),
                 "10-100-10 outgoing": ([10, 100, 10], "outgoing", 50),
                 "10-1000-10 outgoing": ([10, 1000, 10], "outgoing", 5), "784-1000-10 outgoing": ([784, 1000, 10], "outgoing", 1),
                 "784-1000-10 incoming": ([784, 1000, 10], "incoming", 1)},
    "fast_ppo": {"rollout_steps": 4, "num_epochs": 4, "minibatches": 4, "action_noise": "blocks"},
    "evaluation_steps": 8,
    "memory": {"layers": [784, 1000, 10], "ownerships": ["outgoing", "incoming"], "copies": [2, 8, 16],
               "policy": {"hidden": 16, "depth": 1}, "rollout_steps": 2, "num_epochs": 1, "minibatch_size": 2048,
               "collect_chunk": 4096, "evaluation_steps": 2},
}
QUICK = {
    "rounds": 1,
    "pair": ("8-64-4 outgoing", "10-200-10 outgoing"),
    "policy": {"hidden": 32, "depth": 2},
    "networks": {"8-16-4 outgoing": ([8, 16, 4], "outgoing", 8), "8-64-4 outgoing": ([8, 64, 4], "outgoing", 2),
                 "10-200-10 outgoing": ([10, 200, 10], "outgoing", 1), "64-100-10 outgoing": ([64, 100, 10], "outgoing", 1),
                 "64-100-10 incoming": ([64, 100, 10], "incoming", 1)},
    "fast_ppo": {"rollout_steps": 2, "num_epochs": 1, "minibatches": 2, "action_noise": "blocks"},
    "evaluation_steps": 2,
    "memory": {"layers": [32, 64, 10], "ownerships": ["outgoing", "incoming"], "copies": [1, 2, 4],
               "policy": {"hidden": 16, "depth": 1}, "rollout_steps": 2, "num_epochs": 1, "minibatch_size": 1024,
               "collect_chunk": 0, "evaluation_steps": 2},
}


def synapses(layers: list[int]) -> int:
    """Real synapses of one copy (weights; no biases in these networks)."""
    return sum(a * b for a, b in zip(layers[:-1], layers[1:]))


class FanRun:
    """One network's fast-PPO trainer and evaluation setting, timed round after round."""

    def __init__(self, layers: list[int], ownership: str, copies: int, s: dict[str, Any], device: str):
        from marl_net.config import EnvConfig
        from marl_net.fast.ppo import FastPPO, FastPPOConfig

        env = {**ENV, "layers": tuple(layers), "ownership": ownership, "max_cycles": 20}
        p = s["fast_ppo"]
        agents = sum(layers[:-1]) if ownership == "outgoing" else sum(layers[1:])
        batch = p["rollout_steps"] * copies * agents
        ppo = FastPPOConfig(copies=copies, rollout_steps=p["rollout_steps"], num_epochs=p["num_epochs"],
                            minibatch_size=max(1, batch // p["minibatches"]), action_noise=p["action_noise"],
                            device=device, kernel_threads=1)  # one core: evaluation runs on one too
        self.trainer = FastPPO(env, s["policy"], ppo, seed=0)
        self.eval_config = EnvConfig(**{**env, "max_cycles": s["evaluation_steps"]})
        self.policy = self.trainer.policy  # evaluated as it stands: the cost does not depend on its values
        self.copies, self.device = copies, device
        self.synapse_steps_ppo = p["rollout_steps"] * copies * synapses(layers)
        self.synapse_steps_eval = s["evaluation_steps"] * copies * synapses(layers)
        self.ppo_s: list[float] = []
        self.eval_s: list[float] = []
        self.run()  # warm-up
        self.ppo_s.clear()
        self.eval_s.clear()

    def run(self) -> None:
        from marl_net.evaluation import rollout_losses

        sync(self.device)
        start = time.perf_counter()
        self.trainer.train()
        sync(self.device)
        self.ppo_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        rollout_losses(self.policy, self.eval_config, self.copies, seed=0, device=self.device)
        sync(self.device)
        self.eval_s.append(time.perf_counter() - start)

    def summary(self) -> dict[str, float]:
        ppo, ev = statistics.median(self.ppo_s), statistics.median(self.eval_s)
        return {"fast_ppo": self.synapse_steps_ppo / ppo, "evaluation": self.synapse_steps_eval / ev,
                "fast_ppo_seconds_per_iteration": ppo, "evaluation_seconds": ev, "copies": self.copies}


def fan_rates(s: dict[str, Any], device: str) -> dict[str, dict[str, float]]:
    """Synapse-steps/s of fast PPO and evaluation per network, medians over alternating rounds."""
    runs = {name: FanRun(layers, own, copies, s, device) for name, (layers, own, copies) in s["networks"].items()}
    for _ in range(s["rounds"]):
        for run in runs.values():
            run.run()
    return {name: run.summary() for name, run in runs.items()}


def memory_by_copies(s: dict[str, Any], device: str) -> dict[str, dict[str, Any]]:
    """Peak memory of fast PPO and of evaluation on ``s["layers"]`` per ownership and copy count,
    each in a fresh child process; keys ``"{kind} {layers} {ownership}"``, values per copy count."""
    layers = "-".join(str(n) for n in s["layers"])
    out: dict[str, dict[str, Any]] = {}
    for kind in ("fast_ppo", "evaluation"):
        for own in s["ownerships"]:
            per_copies = {}
            for copies in s["copies"]:
                job = {**s, "kind": kind, "ownership": own, "copies": copies, "device": device}
                code = f"from marl_net.commands.bench_fans import memory_child; memory_child({json.dumps(job)!r})"
                proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"{kind} memory run ({layers} {own}, {copies} copies) failed:\n"
                                       f"{proc.stderr[-2000:]}")
                per_copies[copies] = json.loads(proc.stdout.strip().splitlines()[-1])
            out[f"{kind} {layers} {own}"] = per_copies
    return out


def memory_child(job_json: str) -> None:
    """Run in a child process by :func:`memory_by_copies`: one fast-PPO iteration or one short
    evaluation rollout; print the peak memory."""
    import torch

    job = json.loads(job_json)
    torch.set_num_threads(1)
    env = {**ENV, "layers": tuple(job["layers"]), "ownership": job["ownership"], "max_cycles": 20}
    start = time.perf_counter()
    if job["kind"] == "fast_ppo":
        from marl_net.fast.ppo import FastPPO, FastPPOConfig

        ppo = {k: job[k] for k in ("copies", "rollout_steps", "num_epochs", "minibatch_size", "collect_chunk",
                                   "device")}
        FastPPO(env, job["policy"], FastPPOConfig.from_kwargs(**ppo, kernel_threads=1), seed=0).train()
    else:
        from marl_net.config import EnvConfig
        from marl_net.evaluation import rollout_losses
        from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy

        config = EnvConfig(**{**env, "max_cycles": job["evaluation_steps"]})
        policy = SynapsePolicy(PolicyConfig(num_features=len(config.observations) + 1, **job["policy"]))
        rollout_losses(policy, config, job["copies"], seed=0, device=job["device"])
    result = {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}
    if job["device"] == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def linearity(per_copies: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The least-squares line of peak memory against copies: its slope (MiB per added copy), its
    intercept, and whether every measured peak lies within ``LINEAR_TOLERANCE`` of the largest
    peak from the line. Peak RSS moves by some tens of MiB from run to run (the allocator), so the
    increments between neighbouring counts are shown too but not judged; memory growing with the
    square of the copies would leave the line by more than 10% at these counts."""
    counts = sorted(per_copies)
    peak = {c: per_copies[c].get("peak_cuda_mb", per_copies[c]["peak_rss_mb"]) for c in counts}
    mean_c, mean_p = statistics.fmean(counts), statistics.fmean(peak.values())
    slope = (sum((c - mean_c) * (peak[c] - mean_p) for c in counts)
             / max(sum((c - mean_c) ** 2 for c in counts), 1e-12))
    intercept = mean_p - slope * mean_c
    worst = max(abs(peak[c] - (intercept + slope * c)) for c in counts) / max(peak.values())
    return {"peak_mb": {str(c): peak[c] for c in counts}, "mb_per_copy": slope, "intercept_mb": intercept,
            "increments_mb_per_copy": [(peak[b] - peak[a]) / (b - a) for a, b in zip(counts[:-1], counts[1:])],
            "largest_deviation": worst, "linear": worst <= LINEAR_TOLERANCE}


def run_fans(quick: bool, device: str) -> dict[str, Any]:
    s = QUICK if quick else FULL
    rates = fan_rates(s, device)
    memory = {key: linearity(v) for key, v in memory_by_copies(s["memory"], device).items()}
    uniform, wide = s["pair"]
    ratios = {kind: rates[wide][kind] / rates[uniform][kind] for kind in ("fast_ppo", "evaluation")}
    met = {f"{kind} {wide} / {uniform}": r >= TARGET_WIDE_OVER_UNIFORM for kind, r in ratios.items()}
    met.update({f"memory linear in copies: {key}": m["linear"] for key, m in memory.items()})
    return {"synapse_steps_per_s": rates, "wide_over_uniform": ratios, "memory": memory, "targets_met": met,
            "settings": s}


def print_fans(r: dict[str, Any]) -> None:
    print("\nsynapse-steps/s (real synapses only), policy hidden {hidden}, depth {depth}:".format(
        **r["settings"]["policy"]))
    print(f"  {'network':24s}{'fast PPO':>14s}{'evaluation':>14s}")
    for name, v in r["synapse_steps_per_s"].items():
        print(f"  {name:24s}{v['fast_ppo']:14,.0f}{v['evaluation']:14,.0f}")
    uniform, wide = r["settings"]["pair"]
    for kind, ratio in r["wide_over_uniform"].items():
        ok = r["targets_met"][f"{kind} {wide} / {uniform}"]
        print(f"  {kind}: {wide} / {uniform} = {ratio:.2f}   target >= {TARGET_WIDE_OVER_UNIFORM}   "
              f"{'met' if ok else 'MISSED'}")
    print("\npeak memory by copies (MiB), its least-squares line in copies and the largest deviation from it:")
    for key, m in r["memory"].items():
        peaks = ", ".join(f"{c}: {v:,.0f}" for c, v in m["peak_mb"].items())
        print(f"  {key:36s}{peaks}   {m['mb_per_copy']:,.0f} per copy + {m['intercept_mb']:,.0f}, largest deviation "
              f"{m['largest_deviation']:.1%}   {'linear' if m['linear'] else 'NOT LINEAR'}")
