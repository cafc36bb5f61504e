"""A real two-node Ray cluster on this machine: ``ray start --head`` plus a second ``ray start
--address`` node carrying a custom resource; a short Tune launch (``marl-net tune --address``'s
code path) places its env runner on the second node through ``custom_resources_per_env_runner``.

Token authentication (Ray 2.59+) is on, with a fresh token in a temp file (``RAY_AUTH_TOKEN_PATH``),
so the test neither needs nor touches ``~/.ray/auth_token``. The cluster runs in its own
processes and temp dir, apart from the session's in-process Ray. It is shut down by terminating
the two ``ray start --block`` processes (each stops the Ray processes it started): ``ray stop``
would kill every Ray process on the machine, the session's and other users' included.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
DRIVER = r"""
import json, sys, time
import ray
from marl_net.commands.tune import init_ray, run_launch
from marl_net.experiment import validate_launch

address, storage = sys.argv[1:3]
init_ray(address)
deadline = time.time() + 120
while sum(n["Alive"] for n in ray.nodes()) < 2:
    if time.time() > deadline:
        raise SystemExit("the second node never joined")
    time.sleep(0.5)
launch = validate_launch({
    "path": "rllib",
    "env": {"layers": [4, 6, 2], "max_cycles": 5},
    "policy": {"hidden": 8},
    "ppo": {"train_batch_size": 120, "minibatch_size": 60, "num_epochs": 1, "num_env_runners": 1,
            "num_cpus_per_env_runner": 1, "custom_resources_per_env_runner": {"runner_node": 1}},
    "stop": {"training_iteration": 1},
    "run": {"name": "cluster", "storage_path": storage, "checkpoint_frequency": 0, "checkpoint_at_end": False},
})
results = run_launch(launch)
alive = [n for n in ray.nodes() if n["Alive"]]
runner_node = [n["NodeID"] for n in alive if "runner_node" in n["Resources"]]
from ray._private import state
runners = [a["Address"]["NodeID"] for a in state.actors().values()
           if a["ActorClassName"].endswith("AggregateMetricsEnvRunner")]
print("RESULT " + json.dumps({"runner_node": runner_node, "runners_on": runners, "nodes": len(alive),
                              "iterations": results[0].metrics["training_iteration"]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the head node never listened on port {port}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_tune_launch_places_env_runner_on_the_second_node(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="mnc", dir="/tmp"))  # short: Ray's unix socket paths are limited
    token = base / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={base / 'ray'}", *common],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for_port(port, procs[0])
        procs.append(subprocess.Popen(
            [str(BIN / "ray"), "start", f"--address={address}", '--resources={"runner_node": 1}', *common],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        run = subprocess.run([sys.executable, "-c", DRIVER, address, str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=420)
        lines = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
        assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-5000:]
        result = json.loads(lines[-1][len("RESULT "):])
        assert result["nodes"] == 2 and result["iterations"] == 1
        assert len(result["runner_node"]) == 1
        assert result["runners_on"] and set(result["runners_on"]) == set(result["runner_node"])
        assert list((tmp_path / "cluster").glob("PPO_*/events.out.tfevents.*"))
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)
