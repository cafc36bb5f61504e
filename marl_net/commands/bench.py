"""``marl-net bench throughput``: agent-steps per second of the four ways to run the env.

    marl-net bench throughput                 # the full benchmark, about 3 minutes on 2 cores
    marl-net bench throughput --quick         # a smoke run in about a minute (figures not meaningful)
    marl-net bench throughput --json out.json --device cuda --threads 1

In one process, on the same network, task and policy (the ``THROUGHPUT`` launch below), it
measures agent-steps per second of (a) the PettingZoo env stepped with random actions, (b) RLlib
PPO end to end on the literal path (``marl_net.rllib.algo.build_ppo_config``, ``algo.train()``),
configured like-for-like with (d): the same objective and the same optimizer steps per sample
(``marl_net.ppo_objective``: no KL term, the same clipping, value-loss coefficient, no value
clipping on either side, global-norm gradient clipping, epochs and minibatches per epoch), (c) the
batched fast-path env stepped with random actions, (d) fast-path PPO end to end (collection plus
learning), (d2) the same on two worker processes (``FastPPOConfig.workers``: RLlib's (b) runs its
learner and env runner on the machine's two cores, fast PPO a worker on each), (e) the same as
(d) with the recurrent policy (``RECURRENT``: a GRU state per neuron, ``memory="gru_neuron"``, the
memory to use; the fused synapse kernel plus a torch GRU,
whole-sequence learner; alternating with (d) iteration by iteration), (e') the same with the
per-synapse-row GRU (``PER_SYNAPSE_MEMORY``, ``memory="gru"``; torch path; one iteration per
round, no target), and (b') RLlib PPO with its own default objective (KL penalty, value clipping),
labelled and without a target. The table prints both sides' settings, read back from the built configs;
when (b) and (d) differ in any, no (d)/(b) ratio is reported and the target counts as missed. The
paired rates, (a) with (c) and (b), (d), (b') together, are measured in alternating rounds and
reported as medians (three rounds for PPO; (d), (d2) and (e) iteration by iteration), so both
sides of a ratio see the same machine load.
Then, at large batch (a wide policy over many copies, so the learner
is matmul-bound), the fast path's achieved matmul FLOP/s (counted as ``marl_net.fast.flops``
describes) against a torch matmul rate measured in the same run; and the peak memory of fast PPO
on a network of Cai & Cheng's MNIST size (784-1000-10, 1,784 neuron agents) at two copy counts,
each in a child process of its own, so the two peaks are separate. Last, (d) once more with the
policy every shipped config uses (hidden 32, depth 2), through the fused CPU kernel and through
torch (``marl_net.numerics.kernels(False)``) in alternating rounds: what the kernel gives the runs people make;
and (d) on one core and on two (``CORES``: two worker processes splitting the one-core run's
copies (strong scaling), two workers with that many copies each (weak scaling), and one process
with the kernel on two threads), the same seed in alternating rounds, checking that the one-process
settings end with the same parameters (two workers draw other numbers by design).
Last, fans (``marl_net.commands.bench_fans``): synapse-steps per second of fast PPO and of
evaluation on 8-16-4, 8-64-4, 10-100-10, 10-1000-10 (outgoing) and 784-1000-10 (both ownerships)
in alternating rounds, and the peak memory of fast PPO and evaluation on 784-1000-10 (both
ownerships) at several copy counts, each in a child process of its own.

It prints a table and exits 1 when a target is missed: fast PPO on two workers (d2) at least 100x
the agent-steps/s of like-for-like RLlib PPO, at least 25% of the matmul rate at large batch, on two workers
splitting the one-core run's copies at least 1.6x its one-core rate, (e) at least 40% of (d)'s agent-steps/s; fast PPO and evaluation on
10-1000-10 (outgoing) at least half their synapse-steps/s on 8-64-4, and their peak memory linear in
copies. ``--quick`` shrinks everything
to a smoke run; it reports the targets but does not enforce them. ``--json FILE`` writes
``{"machine", "device", "agent_steps_per_s": {pettingzoo_env, rllib_ppo, fast_env, fast_ppo,
rllib_ppo_default_objective, fast_ppo_all_cores (d2), fast_ppo_recurrent, fast_ppo_recurrent_per_synapse,
fast_ppo_1_core, fast_ppo_2_cores, fast_ppo_2_cores_weak, fast_ppo_2_threads}, "ratios": {"fast_env/pettingzoo_env",
"fast_ppo_all_cores/rllib_ppo", "fast_ppo/rllib_ppo" (both null when the two sides' settings
differ), "fast_ppo/rllib_ppo_default_objective",
"fast_ppo_2_cores/1_core", "fast_ppo_2_cores_weak/1_core", "fast_ppo_recurrent/fast_ppo", "fast_ppo_recurrent_per_synapse/fast_ppo"},
"like_for_like": {"fast_ppo",
"rllib_ppo", "rllib_ppo_default_objective" (each side's settings in marl_net.ppo_objective's terms),
"differences", "batch_agent_steps", "notes"}, "matmul_flops_per_s",
"fast_ppo_flops_per_s", "peak_memory_mb": {...}, "synapse_steps_per_s": {network: {fast_ppo,
evaluation, ...}}, "config": {...}, "numerics": {...}}`` (``config``
holds every setting, the targets and whether each was met; ``numerics``, ``marl_net.numerics``'
record: the policy's path, the kernels' compiler flags, torch, the CPU).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from marl_net.commands.bench_fans import print_fans, run_fans
from marl_net.commands.measure import peak_rss_mb as _peak_rss_mb
from marl_net.commands.measure import sync as _sync

HELP = "benchmarks: throughput of the PettingZoo, RLlib and fast paths"

TARGETS = {"fast_ppo_all_cores/rllib_ppo": 100.0, "fast_ppo_flops/matmul": 0.25, "fast_ppo_2_cores/1_core": 1.6,
           "fast_ppo_recurrent/fast_ppo": 0.40}
# (e): (d) with the recurrent policy the runs use (a GRU state per neuron, fed the pooled summary of
# its synapses: marl_net.policies.neuron_memory) added to the same policy; (e'): with a GRU per
# synapse row instead (marl_net.policies.recurrent_policy, torch path), shown without a target
RECURRENT = {"memory": "gru_neuron", "memory_size": 16}
PER_SYNAPSE_MEMORY = {"memory": "gru", "memory_size": 16}
# (d) on one core and on two: "2_cores" runs two data-parallel worker processes (FastPPOConfig's
# workers, marl_net.fast.data_parallel: other numbers than one worker's, by design) on the one-core
# run's copies (strong scaling, like for like: each worker half of them; the row the 1.6x target is
# on), "2_cores_weak" two workers each with the one-core run's copies (weak scaling, as DD-PPO
# scales: twice the copies and the minibatch, the same minibatches per epoch; shown, no target), "2_threads" one
# process whose fused kernel acts and learns on two threads (kernel_threads; the same numbers as one
# core, checked; shown, no target). Every process's torch ops run on one thread: a second intra-op
# thread slows the env step's many small ops.
CORES = {"1_core": {"workers": 1, "kernel_threads": 1, "torch_threads": 1},
         "2_cores": {"workers": 2, "kernel_threads": 1, "torch_threads": 1},
         "2_cores_weak": {"workers": 2, "kernel_threads": 1, "torch_threads": 1},
         "2_threads": {"workers": 1, "kernel_threads": 2, "torch_threads": 1}}
WEAK = {"2_cores_weak"}  # settings whose every worker steps the one-core run's copies
# (d2): (d) on two cores, a worker process on each, as RLlib's (b) runs its learner and env runner
# on two: the row the 100x target is on (the PPO rounds measure it beside (b) and (d))
ALL_CORES = CORES["2_cores"]

ENV = {"task": "teacher_student", "layers": [8, 16, 4], "ownership": "outgoing", "reward": "global_loss", "max_cycles": 20}
# The launch both PPO paths run: same env, same policy, same PPO objective (no KL term, clipped
# surrogate, value loss 0.5 * 0.5 (v - R)^2 unclipped, global-norm gradient clipping at 0.5), the
# same epochs and the same number of minibatches per epoch (marl_net.ppo_objective maps it onto
# RLlib's PPOConfig and checks both built configs agree). The fast path steps `copies` networks at
# once and so learns from larger batches (its point); it runs as many copies as (c) and, as
# CleanRL does, four minibatches per epoch; RLlib splits its own train batch into as many.
THROUGHPUT = {
    "env": ENV,
    "policy": {"hidden": 16, "depth": 1},
    "ppo": {"lr": 3.0e-4, "gamma": 0.99, "lambda_": 0.95, "clip_param": 0.2, "num_epochs": 4, "vf_loss_coeff": 0.5,
            "grad_clip": 0.5, "entropy_coeff": 0.0},
    "run": {"seed": 0},
}
# The second RLlib row, as this benchmark ran it before it was like-for-like: RLlib's default
# objective (KL penalty 0.2, squared error clipped at 10, value coefficient 1.0, no gradient
# clipping) with this launch's lr, gamma, lambda, clip and epochs, minibatches of 256.
RLLIB_DEFAULT_OBJECTIVE = {"lr": 3.0e-4, "gamma": 0.99, "lambda_": 0.95, "clip_param": 0.2, "num_epochs": 4,
                           "minibatch_size": 256}
FULL = {
    "rounds": 5,  # alternating rounds of (a) with (c)
    "ppo_rounds": 3,  # alternating rounds of (b), (d) and (b')
    "rllib_ppo": {"train_batch_size": 4800, "num_env_runners": 1},  # minibatches: as many as fast PPO's
    "fast_ppo": {"copies": 256, "rollout_steps": 20, "minibatch_size": 30720, "iterations": 2},  # per round
    "pettingzoo_env": {"steps": 100},
    "fast_env": {"copies": 256, "steps": 10},
    "large_batch": {"policy": {"hidden": 256, "depth": 2}, "copies": 32, "rollout_steps": 20, "num_epochs": 1,
                    "minibatch_size": 8192, "iterations": 2},
    "scale": {"layers": [784, 1000, 10], "copies": [4, 16], "policy": {"hidden": 16, "depth": 1}, "rollout_steps": 2,
              "num_epochs": 1, "minibatch_size": 2048, "collect_chunk": 4096},
    # (d) again with the policy every shipped config uses, through the fused kernel and through torch
    "cores": {"copies": 256, "rollout_steps": 20, "minibatch_size": 30720, "rounds": 7},  # (d), alternating
    "deep_policy": {"policy": {"hidden": 32, "depth": 2}, "copies": 256, "rollout_steps": 20,
                    "minibatch_size": 30720, "rounds": 3},
}
QUICK = {
    "rounds": 1,
    "ppo_rounds": 1,
    "rllib_ppo": {"train_batch_size": 480, "num_env_runners": 1},
    "fast_ppo": {"copies": 4, "rollout_steps": 5, "minibatch_size": 120, "iterations": 1},
    "pettingzoo_env": {"steps": 20},
    "fast_env": {"copies": 8, "steps": 5},
    "large_batch": {"policy": {"hidden": 64, "depth": 2}, "copies": 4, "rollout_steps": 5, "num_epochs": 1,
                    "minibatch_size": 512, "iterations": 1},
    "scale": {"layers": [32, 64, 10], "copies": [1, 2], "policy": {"hidden": 16, "depth": 1}, "rollout_steps": 2,
              "num_epochs": 1, "minibatch_size": 1024, "collect_chunk": 0},
    "cores": {"copies": 16, "rollout_steps": 5, "minibatch_size": 480, "rounds": 1},
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
    """(b) RLlib PPO on the literal path (``build_ppo_config``), ``algo.train()`` end to end, with
    the ``ppo`` settings given (those of ``THROUGHPUT`` are not used: each row states its own)."""

    def __init__(self, ppo: dict[str, Any]):
        from marl_net.ppo_objective import rllib_ppo_objective
        from marl_net.rllib.algo import build_ppo_config

        launch = {**copy.deepcopy(THROUGHPUT), "ppo": dict(ppo)}
        self.algo = build_ppo_config(launch).build_algo()
        self.steps = _agent_steps(self.algo.train())  # warm-up iteration
        self.batch = int(self.steps)  # agent-steps RLlib trained on in one iteration (its minibatch count follows)
        self.objective = rllib_ppo_objective(self.algo.config, self.batch)

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
        self.batch = t.steps * t.env.num_rows * t.world
        # matmul FLOPs are counted for the feed-forward policy only (marl_net.fast.flops)
        self.flops = None if t.policy.recurrent else fast_ppo_iteration_flops(
            t.env.config, t.policy.config, t.config.copies, t.steps, t.config.num_epochs)
        self.seconds: list[float] = []
        self.phases: list[tuple[float, float]] = []  # (collection, learning) seconds per iteration
        self.run()  # warm-up
        self.seconds.clear()
        self.phases.clear()

    def run(self) -> float:
        _sync(self.device)
        start = time.perf_counter()
        metrics = self.trainer.train()
        self.torch_threads = torch_threads()
        _sync(self.device)
        self.seconds.append(time.perf_counter() - start)
        self.phases.append((metrics["collect_time_s"], metrics["learn_time_s"]))
        return self.batch / self.seconds[-1]

    def close(self) -> None:
        self.trainer.close()  # its worker processes, when it has some

    def summary(self) -> dict[str, float]:
        elapsed = statistics.median(self.seconds)
        batch = self.batch
        out = {"agent_steps_per_s": batch / elapsed, "seconds_per_iteration": elapsed, "workers": self.trainer.world,
               "copies": self.trainer.config.copies,
               "kernel_threads": self.trainer.kernel_threads, "torch_threads": self.torch_threads,
               "collect_us_per_agent_step": statistics.median(c for c, _ in self.phases) / batch * 1e6,
               "learn_us_per_agent_step": statistics.median(l for _, l in self.phases) / batch * 1e6}
        if self.flops is not None:
            out.update(flops_per_s=self.flops / elapsed, flops_per_iteration=self.flops)
        return out


def env_rates(s: dict[str, Any], device: str) -> tuple[float, float]:
    """Median (a) and (c) over alternating rounds."""
    pz, fast = PettingZooStepper(), FastEnvStepper(s["fast_env"]["copies"], device)
    a, c = [], []
    for _ in range(s["rounds"]):
        a.append(pz.run(s["pettingzoo_env"]["steps"]))
        c.append(fast.run(s["fast_env"]["steps"]))
    return statistics.median(a), statistics.median(c)


def ppo_rates(s: dict[str, Any], device: str) -> tuple[dict[str, float], dict[str, float], dict[str, Any],
                                                       dict[str, float]]:
    """Median (b), (d), (d2) and (b') over alternating rounds (one RLlib iteration, ``iterations``
    fast ones each, (d), (d2) and (e) alternating iteration by iteration, then one of (e')), and
    both sides' objectives: ``(rates, fast summary, like_for_like, {"fast_ppo_2_cores": (d2)'s
    summary, "fast_ppo_recurrent": (e)'s, "fast_ppo_recurrent_per_synapse": (e')'s})``. (d2) runs
    on the CPU only (worker processes)."""
    import ray

    from marl_net.ppo_objective import NOTES, differences, fast_ppo_objective, rllib_settings_like

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=max(os.cpu_count() or 2, 2), include_dashboard=False, log_to_driver=False)
    rows: dict[str, RLlibPPO] = {}
    fast_runs: list[FastPPORun] = []
    try:
        fast = FastPPORun(THROUGHPUT["policy"], s["fast_ppo"], device)
        both = FastPPORun(THROUGHPUT["policy"], {**s["fast_ppo"], **ALL_CORES}, device) if device == "cpu" else None
        recurrent = FastPPORun({**THROUGHPUT["policy"], **RECURRENT}, s["fast_ppo"], device)
        per_synapse = FastPPORun({**THROUGHPUT["policy"], **PER_SYNAPSE_MEMORY}, s["fast_ppo"], device)
        fast_runs = [run for run in (fast, both, recurrent, per_synapse) if run is not None]
        runner = {k: v for k, v in s["rllib_ppo"].items() if k != "train_batch_size"}
        like = rllib_settings_like(fast.trainer.config, fast.batch, s["rllib_ppo"]["train_batch_size"])
        rows["rllib_ppo"] = RLlibPPO({**like, **runner})
        rows["rllib_ppo_default_objective"] = RLlibPPO({**RLLIB_DEFAULT_OBJECTIVE, **s["rllib_ppo"]})
        rates: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(s["ppo_rounds"]):
            rates["rllib_ppo"].append(rows["rllib_ppo"].run())
            for _ in range(s["fast_ppo"]["iterations"]):
                fast.run()
                if both is not None:
                    both.run()
                recurrent.run()
            per_synapse.run()
            rates["rllib_ppo_default_objective"].append(rows["rllib_ppo_default_objective"].run())
        fast_objective = fast_ppo_objective(fast.trainer.config, fast.batch)
        like_for_like = {
            "fast_ppo": fast_objective, "rllib_ppo": rows["rllib_ppo"].objective,
            "differences": differences(fast_objective, rows["rllib_ppo"].objective),
            "rllib_ppo_default_objective": rows["rllib_ppo_default_objective"].objective,
            "batch_agent_steps": {"fast_ppo": fast.batch, "rllib_ppo": rows["rllib_ppo"].batch}, "notes": NOTES,
        }
        return ({k: statistics.median(v) for k, v in rates.items()}, fast.summary(), like_for_like,
                {**({"fast_ppo_all_cores": both.summary()} if both is not None else {}),
                 "fast_ppo_recurrent": recurrent.summary(), "fast_ppo_recurrent_per_synapse": per_synapse.summary()})
    finally:
        for run in fast_runs:
            run.close()
        for row in rows.values():
            row.stop()
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


def core_rates(s: dict[str, Any], device: str) -> dict[str, Any]:
    """(d) with each of ``CORES``' settings, the same seed, in alternating rounds of one iteration
    each; whether the one-process settings (threads only) ended with the same policy parameters,
    bit for bit (two workers draw other numbers by design)."""
    import torch

    threads = torch.get_num_threads()
    runs = {}
    try:
        for name, setting in CORES.items():
            scale = setting["workers"] if name in WEAK else 1
            sizes = {"copies": s["copies"] * scale, "minibatch_size": s["minibatch_size"] * scale}
            runs[name] = FastPPORun(THROUGHPUT["policy"], {**{k: v for k, v in s.items() if k != "rounds"}, **sizes,
                                                           **setting}, device)
        for _ in range(s["rounds"]):
            for run in runs.values():
                run.run()
    finally:
        torch.set_num_threads(threads)
        for run in runs.values():
            run.close()
    first, *others = (run.trainer.policy.state_dict() for name, run in runs.items() if CORES[name]["workers"] == 1)
    same = all(all(torch.equal(first[k], other[k]) for k in first) for other in others)
    rates = {name: run.summary() for name, run in runs.items()}
    return {"runs": rates, "same_results": same,
            "ratios": {f"{name}/1_core": rates[name]["agent_steps_per_s"] / rates["1_core"]["agent_steps_per_s"]
                       for name in CORES if name != "1_core"}}


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
def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


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
    rllib, fast, like_for_like, memories = ppo_rates(s, device)
    recurrent = memories["fast_ppo_recurrent"]
    both = memories.pop("fast_ppo_all_cores", None)
    rates.update(rllib, fast_ppo=fast["agent_steps_per_s"], **{k: m["agent_steps_per_s"] for k, m in memories.items()})
    size = 1024 if quick else 2048
    matmul_before = matmul_flops_per_s(device, size=size)  # the matmul rate around the large-batch run
    large = large_batch_run(s["large_batch"], device)
    deep = deep_policy_rates(s["deep_policy"], device)
    cores = core_rates(s["cores"], device) if device == "cpu" else None
    matmul = statistics.median([matmul_before, matmul_flops_per_s(device, size=size)])
    scale = scale_peak_memory(s["scale"], device)
    fans = run_fans(quick, device)
    comparable = not like_for_like["differences"]  # no ratio between different algorithms
    ratios = {"fast_env/pettingzoo_env": rates["fast_env"] / rates["pettingzoo_env"],
              "fast_ppo/rllib_ppo": rates["fast_ppo"] / rates["rllib_ppo"] if comparable else None,
              "fast_ppo_all_cores/rllib_ppo": (both["agent_steps_per_s"] / rates["rllib_ppo"]
                                             if comparable and both is not None else None),
              "fast_ppo/rllib_ppo_default_objective": rates["fast_ppo"] / rates["rllib_ppo_default_objective"],
              "fast_ppo_recurrent/fast_ppo": rates["fast_ppo_recurrent"] / rates["fast_ppo"],
              "fast_ppo_recurrent_per_synapse/fast_ppo": rates["fast_ppo_recurrent_per_synapse"] / rates["fast_ppo"]}
    flop_fraction = large["flops_per_s"] / matmul
    met = {"fast_ppo_all_cores/rllib_ppo": (ratios["fast_ppo_all_cores/rllib_ppo"] is not None
                                          and ratios["fast_ppo_all_cores/rllib_ppo"] >= TARGETS["fast_ppo_all_cores/rllib_ppo"]),
           "fast_ppo_flops/matmul": flop_fraction >= TARGETS["fast_ppo_flops/matmul"],
           "fast_ppo_recurrent/fast_ppo": ratios["fast_ppo_recurrent/fast_ppo"] >= TARGETS["fast_ppo_recurrent/fast_ppo"],
           **fans["targets_met"]}
    if cores is not None:
        for name in ("2_cores", "2_cores_weak"):
            ratios[f"fast_ppo_{name}/1_core"] = cores["ratios"][f"{name}/1_core"]
        met["fast_ppo_2_cores/1_core"] = ratios["fast_ppo_2_cores/1_core"] >= TARGETS["fast_ppo_2_cores/1_core"]
        rates.update({f"fast_ppo_{name}": r["agent_steps_per_s"] for name, r in cores["runs"].items()})
    if both is not None:
        rates["fast_ppo_all_cores"] = both["agent_steps_per_s"]
    layers = "-".join(str(n) for n in s["scale"]["layers"])
    peak = {"process_rss": _peak_rss_mb()}
    peak.update({f"fast_ppo_{layers}_copies_{c}": r.get("peak_cuda_mb", r["peak_rss_mb"]) for c, r in scale.items()})
    peak.update({f"{key} copies {c}": v for key, m in fans["memory"].items() for c, v in m["peak_mb"].items()})
    return {
        "machine": machine_description(),
        "device": device_description(device),
        "agent_steps_per_s": rates,
        "ratios": ratios,
        "like_for_like": like_for_like,
        "matmul_flops_per_s": matmul,
        "fast_ppo_flops_per_s": large["flops_per_s"],
        "peak_memory_mb": peak,
        "synapse_steps_per_s": fans["synapse_steps_per_s"],
        "config": {
            "quick": quick, "throughput_launch": THROUGHPUT, "settings": s, "targets": TARGETS, "targets_met": met,
            "fast_ppo_flops_fraction_of_matmul": flop_fraction, "large_batch": large, "fast_ppo_throughput": fast,
            "fast_ppo_all_cores_throughput": both,
            "fast_ppo_recurrent_throughput": recurrent, "recurrent_policy": RECURRENT,
            "fast_ppo_recurrent_per_synapse_throughput": memories["fast_ppo_recurrent_per_synapse"],
            "per_synapse_memory_policy": PER_SYNAPSE_MEMORY,
            "deep_policy_fast_ppo": deep, "cores": cores,
            "scale": {str(c): r for c, r in scale.items()}, "fans": fans,
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
    for key, label in (("pettingzoo_env", "(a) PettingZoo env, random"), ("rllib_ppo", "(b) RLlib PPO, like-for-like"),
                       ("fast_env", "(c) batched env, random"), ("fast_ppo", "(d) fast PPO, end to end"),
                       ("fast_ppo_all_cores", "(d2) (d), two worker processes"),
                       ("rllib_ppo_default_objective", "(b') RLlib PPO, its objective"),
                       ("fast_ppo_recurrent", "(e) (d), memory per neuron"),
                       ("fast_ppo_recurrent_per_synapse", "(e') (d), memory per synapse")):
        if key in rates:
            print(f"{label:32s}{rates[key]:16,.0f}")
    like = r["like_for_like"]
    print("\nPPO settings (the objective and optimizer steps; marl_net/ppo_objective.py):")
    heads = ("(d) fast PPO", "(b) RLlib PPO", "(b') RLlib default")
    print(f"  {'':24s}{heads[0]:>16s}{heads[1]:>16s}{heads[2]:>20s}")
    for key in like["fast_ppo"]:
        cells = [like[side][key] for side in ("fast_ppo", "rllib_ppo", "rllib_ppo_default_objective")]
        mark = "   DIFFERS" if key in like["differences"] else ""
        print(f"  {key:24s}" + "".join(f"{str(c):>16s}" for c in cells[:2]) + f"{str(cells[2]):>20s}{mark}")
    print(f"  batch (agent-steps)     {like['batch_agent_steps']['fast_ppo']:>16,}{like['batch_agent_steps']['rllib_ppo']:>16,}")
    print("  not compared: " + "; ".join(f"{k} {v['fast_ppo']} (d) vs {v['rllib_ppo']} (b)" for k, v in like["notes"].items()))
    print(f"\nratio (c)/(a): {ratios['fast_env/pettingzoo_env']:8.1f}x")
    if ratios["fast_ppo/rllib_ppo"] is None:
        print(f"ratio (d)/(b): not reported: the two sides differ in {like['differences']}   MISSED")
    else:
        rounds = cfg["settings"]["ppo_rounds"]
        target = TARGETS["fast_ppo_all_cores/rllib_ppo"]
        if ratios["fast_ppo_all_cores/rllib_ppo"] is not None:
            print(f"ratio (d2)/(b): {ratios['fast_ppo_all_cores/rllib_ppo']:7.1f}x   target >= {target:.0f}x   "
                  f"{'met' if cfg['targets_met']['fast_ppo_all_cores/rllib_ppo'] else 'MISSED'}   (like-for-like, both "
                  f"on the machine's cores: RLlib's learner and env runner, fast PPO's two workers; median of "
                  f"{rounds} alternating rounds)")
        print(f"ratio (d)/(b): {ratios['fast_ppo/rllib_ppo']:8.1f}x   (like-for-like, fast PPO on one core; no target)")
    print(f"ratio (d)/(b'): {ratios['fast_ppo/rllib_ppo_default_objective']:7.1f}x   (not like-for-like: RLlib's own "
          "objective; no target)")
    print(f"ratio (e)/(d): {ratios['fast_ppo_recurrent/fast_ppo']:8.2f}x   "
          f"target >= {TARGETS['fast_ppo_recurrent/fast_ppo']:.2f}x"
          f"   {'met' if cfg['targets_met']['fast_ppo_recurrent/fast_ppo'] else 'MISSED'}   "
          f"({cfg['recurrent_policy']['memory']}: a GRU state per neuron)")
    print(f"ratio (e')/(d): {ratios['fast_ppo_recurrent_per_synapse/fast_ppo']:7.2f}x   (gru: a GRU per synapse row, "
          "torch path; no target)")
    for key, label in (("fast_ppo_recurrent_throughput", "(e) "), ("fast_ppo_recurrent_per_synapse_throughput", "(e')")):
        rec = cfg[key]
        print(f"{label} per agent-step: collection {rec['collect_us_per_agent_step']:.2f} us, "
              f"learning {rec['learn_us_per_agent_step']:.2f} us")
    fast = cfg["fast_ppo_throughput"]
    print(f"(d) per agent-step:  collection {fast['collect_us_per_agent_step']:.2f} us, "
          f"learning {fast['learn_us_per_agent_step']:.2f} us ({r['config']['throughput_launch']['ppo']['num_epochs']} epochs; "
          f"kernel threads {fast['kernel_threads']}, torch threads {fast['torch_threads']})")
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
    cores = cfg["cores"]
    if cores is not None:
        print("\n(d) on one core and on two (workers, kernel_threads, torch_threads, copies), agent-steps/s:")
        for name, setting in CORES.items():
            c = cores["runs"][name]
            print(f"  {name:13s}{str(tuple(setting.values()) + (c['copies'],)):>17s}"
                  f"{c['agent_steps_per_s']:12,.0f}   (rank 0: collection {c['collect_us_per_agent_step']:.2f} us + "
                  f"learning {c['learn_us_per_agent_step']:.2f} us per agent-step)")
        print(f"  2 cores, strong scaling / 1 core: {cores['ratios']['2_cores/1_core']:.2f}x   target >= "
              f"{TARGETS['fast_ppo_2_cores/1_core']}x   "
              f"{'met' if cfg['targets_met']['fast_ppo_2_cores/1_core'] else 'MISSED'}   (the 1-core run's "
              f"{cores['runs']['1_core']['copies']} copies split over two workers)\n  2 cores, weak scaling / 1 core: "
              f"{cores['ratios']['2_cores_weak/1_core']:.2f}x   (each worker the 1-core run's copies; no target)"
              f"\n  2 threads / 1 core: "
              f"{cores['ratios']['2_threads/1_core']:.2f}x   (one process, the kernel on two threads; same seed, same "
              f"results: {'yes, bit for bit' if cores['same_results'] else 'NO'})")
    print(f"\ntorch matmul rate:           {r['matmul_flops_per_s'] / 1e9:8.1f} GFLOP/s")
    print(f"fast PPO at large batch:     {r['fast_ppo_flops_per_s'] / 1e9:8.1f} GFLOP/s = "
          f"{cfg['fast_ppo_flops_fraction_of_matmul']:.0%} of matmul   target >= {TARGETS['fast_ppo_flops/matmul']:.0%}"
          f"   {'met' if cfg['targets_met']['fast_ppo_flops/matmul'] else 'MISSED'}")
    print("\npeak memory (MiB):")
    for key, value in r["peak_memory_mb"].items():
        if key.startswith("fast_ppo_") or key == "process_rss":  # the fans section prints its own
            print(f"  {key:40s}{value:10,.0f}")
    print_fans(cfg["fans"])


def main(args) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA GPU here: pass --device cpu")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: give at least 1 torch thread (default 1)")
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
