"""``marl-net bench throughput``: agent-steps per second of the four ways to run the env.

    marl-net bench throughput                 # the full benchmark, about 1.5 minutes on 2 cores
    marl-net bench throughput --quick         # a smoke run in about a minute (figures not meaningful)
    marl-net bench throughput --json out.json --device cuda --threads 1

In one process, on the same network, task and policy (the ``THROUGHPUT`` launch below), it
measures agent-steps per second of (a) the PettingZoo env stepped with random actions, (b) RLlib
PPO end to end on the literal path (``marl_net.rllib.algo.build_ppo_config``, ``algo.train()``),
(c) the batched fast-path env stepped with random actions and (d) fast-path PPO end to end
(collection plus learning). The paired rates, (a) with (c) and (b) with (d), are measured in
alternating rounds and reported as medians, so both sides of a ratio see the same machine load.
Then, at large batch (a wide policy over many copies, so the learner
is matmul-bound), the fast path's achieved matmul FLOP/s (counted as ``marl_net.fast.flops``
describes) against a torch matmul rate measured in the same run; and the peak memory of fast PPO
on a network of Cai & Cheng's MNIST size (784-1000-10, 1,784 neuron agents) at two copy counts,
each in a child process of its own, so the two peaks are separate. Last, (d) once more with the
policy every shipped config uses (hidden 32, depth 2), through the fused CPU kernel and through
torch (``marl_net.numerics.kernels(False)``) in alternating rounds: what the kernel gives the runs people make.

It prints a table and exits 1 when a target is missed: fast PPO at least 100x the agent-steps/s
of RLlib PPO, and at least 25% of the matmul rate at large batch. ``--quick`` shrinks everything
to a smoke run; it reports the targets but does not enforce them. ``--json FILE`` writes
``{"machine", "device", "agent_steps_per_s": {pettingzoo_env, rllib_ppo, fast_env, fast_ppo},
"ratios": {"fast_env/pettingzoo_env", "fast_ppo/rllib_ppo"}, "matmul_flops_per_s",
"fast_ppo_flops_per_s", "peak_memory_mb": {...}, "config": {...}, "numerics": {...}}`` (``config``
holds every setting, the targets and whether each was met; ``numerics``, ``marl_net.numerics``'
record: the policy's path, the kernels' compiler flags, torch, the CPU).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

HELP = "benchmarks: throughput of the PettingZoo, RLlib and fast paths"

TARGETS = {"fast_ppo/rllib_ppo": 100.0, "fast_ppo_flops/matmul": 0.25}

ENV = {"task": "teacher_student", "layers": [8, 16, 4], "ownership": "outgoing", "reward": "global_loss", "max_cycles": 20}
# The launch both PPO paths run: same env, same policy, same PPO objective and epochs. The fast
# path steps `copies` networks at once and so learns from larger batches (its point); it runs
# as many copies as (c) and, as CleanRL does, four minibatches per epoch.
THROUGHPUT = {
    "env": ENV,
    "policy": {"hidden": 16, "depth": 1},
    "ppo": {"lr": 3.0e-4, "gamma": 0.99, "lambda_": 0.95, "clip_param": 0.2, "num_epochs": 4},
    "run": {"seed": 0},
}
FULL = {
    "rounds": 5,  # alternating rounds of the paired measurements: (a) with (c), (b) with (d)
    "rllib_ppo": {"train_batch_size": 4800, "minibatch_size": 256, "num_env_runners": 1},
    "fast_ppo": {"copies": 256, "rollout_steps": 20, "minibatch_size": 30720, "iterations": 2},  # per round
    "pettingzoo_env": {"steps": 100},
    "fast_env": {"copies": 256, "steps": 10},
    "large_batch": {"policy": {"hidden": 256, "depth": 2}, "copies": 32, "rollout_steps": 20, "num_epochs": 1,
                    "minibatch_size": 8192, "iterations": 2},
    "scale": {"layers": [784, 1000, 10], "copies": [4, 16], "policy": {"hidden": 16, "depth": 1}, "rollout_steps": 2,
              "num_epochs": 1, "minibatch_size": 2048, "collect_chunk": 4096},
    # (d) again with the policy every shipped config uses, through the fused kernel and through torch
    "deep_policy": {"policy": {"hidden": 32, "depth": 2}, "copies": 256, "rollout_steps": 20,
                    "minibatch_size": 30720, "rounds": 3},
}
QUICK = {
    "rounds": 1,
    "rllib_ppo": {"train_batch_size": 480, "minibatch_size": 240, "num_env_runners": 1},
    "fast_ppo": {"copies": 4, "rollout_steps": 5, "minibatch_size": 256, "iterations": 1},
    "pettingzoo_env": {"steps": 20},
    "fast_env": {"copies": 8, "steps": 5},
    "large_batch": {"policy": {"hidden": 64, "depth": 2}, "copies": 4, "rollout_steps": 5, "num_epochs": 1,
                    "minibatch_size": 512, "iterations": 1},
    "scale": {"layers": [32, 64, 10], "copies": [1, 2], "policy": {"hidden": 16, "depth": 1}, "rollout_steps": 2,
              "num_epochs": 1, "minibatch_size": 1024, "collect_chunk": 0},
    "deep_policy": {"policy": {"hidden": 32, "depth": 2}, "copies": 4, "rollout_steps": 5, "minibatch_size": 256,
                    "rounds": 1},
}


def add_arguments(parser) -> None:
    parser.add_argument("benchmark", choices=["throughput"], help="which benchmark to run")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, targets not enforced")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device of the fast path")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of this process (default 1: RLlib's env runner gets the other core)")


# ------------------------------------------------------------------------------ measurements
# Paired measurements alternate in rounds, (a) with (c) and (b) with (d), and each rate is the
# median over rounds: on a shared machine the load changes by the minute, and alternating puts
# both sides of a ratio under the same load.
class PettingZooStepper:
    """(a) network_weights_v0 stepped with random actions."""

    def __init__(self):
        import numpy as np

        from marl_net.envs import network_weights_v0

        self.env = network_weights_v0.parallel_env(**ENV)
        self.rng = np.random.default_rng(0)
        self.k = self.env.action_space(self.env.possible_agents[0]).shape[0]
        self.env.reset(seed=0)

    def run(self, steps: int) -> float:
        import numpy as np

        count, start = 0, time.perf_counter()
        for _ in range(steps):
            if not self.env.agents:
                self.env.reset()
            actions = {a: self.rng.uniform(-1, 1, self.k).astype(np.float32) for a in self.env.agents}
            count += len(actions)
            self.env.step(actions)
        return count / (time.perf_counter() - start)


class FastEnvStepper:
    """(c) the batched env stepped with random actions."""

    def __init__(self, copies: int, device: str):
        import torch

        from marl_net.fast.vector_env import VectorNetworkEnv

        self.torch, self.device = torch, device
        self.env = VectorNetworkEnv(ENV, copies=copies, device=device)
        self.env.reset(seed=0)
        self.gen = torch.Generator(device).manual_seed(0)
        self.run(1)  # warm-up

    def run(self, steps: int) -> float:
        env, torch = self.env, self.torch
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            env.step(torch.rand(env.num_rows, env.max_fan, generator=self.gen, device=self.device) * 2 - 1)
        _sync(self.device)
        return steps * env.num_rows / (time.perf_counter() - start)


class RLlibPPO:
    """(b) RLlib PPO on the literal path (``build_ppo_config``), ``algo.train()`` end to end."""

    def __init__(self, settings: dict[str, Any]):
        from marl_net.rllib.algo import build_ppo_config

        launch = copy.deepcopy(THROUGHPUT)
        launch["ppo"].update({k: v for k, v in settings.items() if k != "iterations"})
        self.algo = build_ppo_config(launch).build_algo()
        self.steps = _agent_steps(self.algo.train())  # warm-up iteration

    def run(self) -> float:
        start = time.perf_counter()
        steps = _agent_steps(self.algo.train())
        rate = (steps - self.steps) / (time.perf_counter() - start)
        self.steps = steps
        return rate

    def stop(self) -> None:
        self.algo.stop()


def _agent_steps(result: dict[str, Any]) -> float:
    value = result["env_runners"]["num_agent_steps_sampled_lifetime"]
    return float(sum(value.values()) if isinstance(value, dict) else value)


class FastPPORun:
    """(d) fast-path PPO end to end; also counts the iteration's matmul FLOPs."""

    def __init__(self, policy: dict, settings: dict[str, Any], device: str):
        from marl_net.fast.flops import fast_ppo_iteration_flops
        from marl_net.fast.ppo import FastPPO, FastPPOConfig

        ppo = {**THROUGHPUT["ppo"], **{k: v for k, v in settings.items() if k not in ("iterations", "policy")},
               "device": device}
        self.device = device
        self.trainer = t = FastPPO(ENV, policy, FastPPOConfig.from_kwargs(**ppo), seed=0)
        self.flops = fast_ppo_iteration_flops(t.env.config, t.policy.config, t.config.copies, t.steps,
                                              t.config.num_epochs)
        self.seconds: list[float] = []
        self.phases: list[tuple[float, float]] = []  # (collection, learning) seconds per iteration
        self.run()  # warm-up
        self.seconds.clear()
        self.phases.clear()

    def run(self) -> float:
        _sync(self.device)
        start = time.perf_counter()
        metrics = self.trainer.train()
        _sync(self.device)
        self.seconds.append(time.perf_counter() - start)
        self.phases.append((metrics["collect_time_s"], metrics["learn_time_s"]))
        return self.trainer.steps * self.trainer.env.num_rows / self.seconds[-1]

    def summary(self) -> dict[str, float]:
        elapsed = statistics.median(self.seconds)
        batch = self.trainer.steps * self.trainer.env.num_rows
        return {"agent_steps_per_s": batch / elapsed, "flops_per_s": self.flops / elapsed,
                "flops_per_iteration": self.flops, "seconds_per_iteration": elapsed,
                "collect_us_per_agent_step": statistics.median(c for c, _ in self.phases) / batch * 1e6,
                "learn_us_per_agent_step": statistics.median(l for _, l in self.phases) / batch * 1e6}


def env_rates(s: dict[str, Any], device: str) -> tuple[float, float]:
    """Median (a) and (c) over alternating rounds."""
    pz, fast = PettingZooStepper(), FastEnvStepper(s["fast_env"]["copies"], device)
    a, c = [], []
    for _ in range(s["rounds"]):
        a.append(pz.run(s["pettingzoo_env"]["steps"]))
        c.append(fast.run(s["fast_env"]["steps"]))
    return statistics.median(a), statistics.median(c)


def ppo_rates(s: dict[str, Any], device: str) -> tuple[float, dict[str, float]]:
    """Median (b) and (d) over alternating rounds of one iteration each."""
    import ray

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=max(os.cpu_count() or 2, 2), include_dashboard=False, log_to_driver=False)
    rllib = RLlibPPO(s["rllib_ppo"])
    try:
        fast = FastPPORun(THROUGHPUT["policy"], s["fast_ppo"], device)
        b = []
        for _ in range(s["rounds"]):
            b.append(rllib.run())
            for _ in range(s["fast_ppo"]["iterations"]):
                fast.run()
        return statistics.median(b), fast.summary()
    finally:
        rllib.stop()
        if started_ray:
            ray.shutdown()


def large_batch_run(s: dict[str, Any], device: str) -> dict[str, float]:
    run = FastPPORun(s["policy"], s, device)
    for _ in range(s["iterations"]):
        run.run()
    return run.summary()


def deep_policy_rates(s: dict[str, Any], device: str) -> dict[str, dict[str, float]]:
    """Fast PPO as in (d) with the shipped configs' policy (hidden 32, depth 2), through the fused
    kernel and through torch, in alternating rounds (on a GPU only the torch path exists)."""
    from marl_net import numerics

    kinds = ("fused", "torch") if device == "cpu" else ("torch",)
    runs = {}
    for kind in kinds:
        with numerics.kernels(kind == "fused"):
            runs[kind] = FastPPORun(s["policy"], {k: v for k, v in s.items() if k != "rounds"}, device)
    for _ in range(s["rounds"]):
        for kind, run in runs.items():
            with numerics.kernels(kind == "fused"):
                run.run()
    return {kind: run.summary() for kind, run in runs.items()}


def scale_peak_memory(settings: dict[str, Any], device: str) -> dict[str, Any]:
    """Peak memory of one fast-PPO iteration on the big network, at each copy count, each in a
    fresh child process (peak RSS, or peak CUDA memory on a GPU)."""
    out = {}
    for copies in settings["copies"]:
        job = {**settings, "copies": copies, "device": device}
        code = f"from marl_net.commands.bench import scale_child; scale_child({json.dumps(job)!r})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scale run with {copies} copies failed:\n{proc.stderr[-2000:]}")
        out[copies] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def scale_child(job_json: str) -> None:
    """Run in a child process by :func:`scale_peak_memory`: one iteration, print peak memory."""
    import torch

    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    job = json.loads(job_json)
    torch.set_num_threads(1)
    env = {**ENV, "layers": job["layers"]}
    ppo = {k: job[k] for k in ("copies", "rollout_steps", "num_epochs", "minibatch_size", "collect_chunk", "device")}
    trainer = FastPPO(env, job["policy"], FastPPOConfig.from_kwargs(**ppo), seed=0)
    start = time.perf_counter()
    metrics = trainer.train()
    result = {"agents_per_copy": trainer.env.num_agents, "seconds_per_iteration": time.perf_counter() - start,
              "peak_rss_mb": _peak_rss_mb(), "inner_loss": float(trainer.env.core.loss.mean()),
              "policy_loss_finite": bool(metrics["policy_loss"] == metrics["policy_loss"])}
    if job["device"] == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


# ------------------------------------------------------------------------------ helpers
def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine_description() -> str:
    from marl_net.numerics import cpu_model

    model = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} CPU cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def device_description(device: str) -> str:
    import torch

    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu ({torch.get_num_threads()} torch threads)"


# ------------------------------------------------------------------------------ the command
def run_throughput(quick: bool, device: str) -> dict[str, Any]:
    from marl_net import numerics

    with numerics.recording() as ran:
        result = _throughput(quick, device)
    # the record of (d) and the rest; deep_policy's torch rows ran with the kernels switched off
    return {**result, "numerics": numerics.describe(device, ran)}


def _throughput(quick: bool, device: str) -> dict[str, Any]:
    from marl_net.fast.flops import matmul_flops_per_s

    s = QUICK if quick else FULL
    rates = dict(zip(("pettingzoo_env", "fast_env"), env_rates(s, device)))
    rates["rllib_ppo"], fast = ppo_rates(s, device)
    rates["fast_ppo"] = fast["agent_steps_per_s"]
    size = 1024 if quick else 2048
    matmul_before = matmul_flops_per_s(device, size=size)  # the matmul rate around the large-batch run
    large = large_batch_run(s["large_batch"], device)
    deep = deep_policy_rates(s["deep_policy"], device)
    matmul = statistics.median([matmul_before, matmul_flops_per_s(device, size=size)])
    scale = scale_peak_memory(s["scale"], device)
    ratios = {"fast_env/pettingzoo_env": rates["fast_env"] / rates["pettingzoo_env"],
              "fast_ppo/rllib_ppo": rates["fast_ppo"] / rates["rllib_ppo"]}
    flop_fraction = large["flops_per_s"] / matmul
    met = {"fast_ppo/rllib_ppo": ratios["fast_ppo/rllib_ppo"] >= TARGETS["fast_ppo/rllib_ppo"],
           "fast_ppo_flops/matmul": flop_fraction >= TARGETS["fast_ppo_flops/matmul"]}
    layers = "-".join(str(n) for n in s["scale"]["layers"])
    peak = {"process_rss": _peak_rss_mb()}
    peak.update({f"fast_ppo_{layers}_copies_{c}": r.get("peak_cuda_mb", r["peak_rss_mb"]) for c, r in scale.items()})
    return {
        "machine": machine_description(),
        "device": device_description(device),
        "agent_steps_per_s": {k: rates[k] for k in ("pettingzoo_env", "rllib_ppo", "fast_env", "fast_ppo")},
        "ratios": ratios,
        "matmul_flops_per_s": matmul,
        "fast_ppo_flops_per_s": large["flops_per_s"],
        "peak_memory_mb": peak,
        "config": {
            "quick": quick, "throughput_launch": THROUGHPUT, "settings": s, "targets": TARGETS, "targets_met": met,
            "fast_ppo_flops_fraction_of_matmul": flop_fraction, "large_batch": large, "fast_ppo_throughput": fast,
            "deep_policy_fast_ppo": deep,
            "scale": {str(c): r for c, r in scale.items()},
            "flop_counting": "matmul FLOPs only (2 per multiply-add), padding slots included, backward = 2x forward; "
                             "see marl_net/fast/flops.py",
        },
    }


def print_table(r: dict[str, Any]) -> None:
    rates, ratios, cfg = r["agent_steps_per_s"], r["ratios"], r["config"]
    n = r["numerics"]
    flags = " ".join(n["kernel_builds"].get("synapse_kernel", {}).get("flags", ["(policy kernel not built)"]))
    print(f"machine: {r['machine']}\ndevice:  {r['device']}\n"
          f"numerics: {n['policy_path']}, torch {n['torch']}, kernel flags: {flags}\n")
    print(f"{'':28s}{'agent-steps/s':>16s}")
    for key, label in (("pettingzoo_env", "(a) PettingZoo env, random"), ("rllib_ppo", "(b) RLlib PPO, end to end"),
                       ("fast_env", "(c) batched env, random"), ("fast_ppo", "(d) fast PPO, end to end")):
        print(f"{label:28s}{rates[key]:16,.0f}")
    print(f"\nratio (c)/(a): {ratios['fast_env/pettingzoo_env']:8.1f}x")
    print(f"ratio (d)/(b): {ratios['fast_ppo/rllib_ppo']:8.1f}x   target >= {TARGETS['fast_ppo/rllib_ppo']:.0f}x"
          f"   {'met' if cfg['targets_met']['fast_ppo/rllib_ppo'] else 'MISSED'}")
    fast = cfg["fast_ppo_throughput"]
    print(f"(d) per agent-step:  collection {fast['collect_us_per_agent_step']:.2f} us, "
          f"learning {fast['learn_us_per_agent_step']:.2f} us ({r['config']['throughput_launch']['ppo']['num_epochs']} epochs)")
    deep = cfg["deep_policy_fast_ppo"]
    policy = cfg["settings"]["deep_policy"]["policy"]
    print(f"\n(d) with the shipped policy (hidden {policy['hidden']}, depth {policy['depth']}), agent-steps/s:")
    for kind, label in (("fused", "fused CPU kernel"), ("torch", "torch path (kernels off)")):
        if kind in deep:
            d = deep[kind]
            print(f"  {label:30s}{d['agent_steps_per_s']:12,.0f}   (collection {d['collect_us_per_agent_step']:.2f} us"
                  f" + learning {d['learn_us_per_agent_step']:.2f} us per agent-step)")
    if "fused" in deep:
        print(f"  fused / torch: {deep['fused']['agent_steps_per_s'] / deep['torch']['agent_steps_per_s']:.2f}x")
    print(f"\ntorch matmul rate:           {r['matmul_flops_per_s'] / 1e9:8.1f} GFLOP/s")
    print(f"fast PPO at large batch:     {r['fast_ppo_flops_per_s'] / 1e9:8.1f} GFLOP/s = "
          f"{cfg['fast_ppo_flops_fraction_of_matmul']:.0%} of matmul   target >= {TARGETS['fast_ppo_flops/matmul']:.0%}"
          f"   {'met' if cfg['targets_met']['fast_ppo_flops/matmul'] else 'MISSED'}")
    print("\npeak memory (MiB):")
    for key, value in r["peak_memory_mb"].items():
        print(f"  {key:40s}{value:10,.0f}")


def main(args) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA GPU here: pass --device cpu")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        result = run_throughput(args.quick, args.device)
    finally:
        torch.set_num_threads(threads)
    print_table(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    if args.quick:
        return 0
    return 0 if all(result["config"]["targets_met"].values()) else 1
