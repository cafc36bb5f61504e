"""``marl-net bench throughput --quick`` runs all four measurements and writes the JSON the issue
specifies (the targets are the full benchmark's business, not this smoke test's)."""

from __future__ import annotations

import json

from marl_net.cli import build_parser
from marl_net.commands import bench, bench_fans


def test_bench_throughput_quick_writes_the_specified_json(ray_session, tmp_path):
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(["bench", "throughput", "--quick", "--json", str(out)])
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"machine", "device", "agent_steps_per_s", "ratios", "like_for_like", "matmul_flops_per_s",
                           "fast_ppo_flops_per_s", "peak_memory_mb", "synapse_steps_per_s", "config", "numerics"}
    assert set(result["agent_steps_per_s"]) == {"pettingzoo_env", "rllib_ppo", "fast_env", "fast_ppo",
                                                "rllib_ppo_default_objective", "fast_ppo_1_core", "fast_ppo_2_cores",
                                                "fast_ppo_2_cores_weak", "fast_ppo_2_threads", "fast_ppo_all_cores", "fast_ppo_recurrent",
                                                "fast_ppo_recurrent_per_synapse"}
    assert set(result["ratios"]) == {"fast_env/pettingzoo_env", "fast_ppo/rllib_ppo", "fast_ppo_all_cores/rllib_ppo",
                                     "fast_ppo/rllib_ppo_default_objective", "fast_ppo_2_cores/1_core",
                                     "fast_ppo_2_cores_weak/1_core",
                                     "fast_ppo_recurrent/fast_ppo", "fast_ppo_recurrent_per_synapse/fast_ppo"}
    assert result["ratios"]["fast_ppo_recurrent/fast_ppo"] == rates_of(result, "fast_ppo_recurrent") / rates_of(
        result, "fast_ppo")  # the recurrent policy's fast PPO beside the feed-forward one
    assert result["config"]["recurrent_policy"]["memory"] == "gru_neuron"  # (e): the memory the runs use
    assert result["config"]["per_synapse_memory_policy"]["memory"] == "gru"
    cores = result["config"]["cores"]  # one thread and two in one process, the same seed: the same results
    assert cores["same_results"] is True
    assert cores["runs"]["2_cores"]["workers"] == 2 and cores["runs"]["1_core"]["workers"] == 1
    assert result["ratios"]["fast_ppo_2_cores/1_core"] == rates_of(result, "fast_ppo_2_cores") / rates_of(
        result, "fast_ppo_1_core")
    # weak scaling: each of the two workers steps the one-core run's copies (strong: they split them)
    weak, one = cores["runs"]["2_cores_weak"], cores["runs"]["1_core"]
    assert weak["workers"] == 2 and weak["copies"] == 2 * one["copies"] == 2 * cores["runs"]["2_cores"]["copies"]
    assert result["ratios"]["fast_ppo_2_cores_weak/1_core"] == rates_of(result, "fast_ppo_2_cores_weak") / rates_of(
        result, "fast_ppo_1_core")
    assert all(v > 0 for v in result["agent_steps_per_s"].values())
    rates, like = result["agent_steps_per_s"], result["like_for_like"]
    # (b) read back from RLlib's built config equals (d)'s settings, so the ratio is reported
    assert like["differences"] == [] and like["fast_ppo"] == like["rllib_ppo"]
    assert like["rllib_ppo"]["kl_coeff"] == 0.0 and like["rllib_ppo"]["minibatches_per_epoch"] == 4
    assert like["rllib_ppo_default_objective"]["kl_coeff"] == 0.2  # the labelled second row keeps RLlib's
    assert result["ratios"]["fast_ppo/rllib_ppo"] == rates["fast_ppo"] / rates["rllib_ppo"]
    # the target's row: (d) on two worker processes, measured in the same rounds as (b)
    assert result["ratios"]["fast_ppo_all_cores/rllib_ppo"] == rates["fast_ppo_all_cores"] / rates["rllib_ppo"]
    assert result["config"]["fast_ppo_all_cores_throughput"]["workers"] == 2
    assert result["numerics"]["policy_path"] == "fused kernel" and result["numerics"]["kernels_ran"]
    assert result["matmul_flops_per_s"] > 0 and result["fast_ppo_flops_per_s"] > 0
    scale_keys = [k for k in result["peak_memory_mb"] if k.startswith("fast_ppo_")]
    assert len(scale_keys) == 2 and all(result["peak_memory_mb"][k] > 0 for k in scale_keys)
    # peak memory of fast PPO and evaluation, both ownerships, three copy counts each
    memory_keys = [k for k in result["peak_memory_mb"] if k.split()[0] in ("fast_ppo", "evaluation")]
    assert len(memory_keys) == 2 * 2 * 3 and all(result["peak_memory_mb"][k] > 0 for k in memory_keys)
    # synapse-steps/s of fast PPO and evaluation on networks of very different fans, in one run
    fans = result["synapse_steps_per_s"]
    assert set(fans) == set(bench_fans.QUICK["networks"])
    assert all(v["fast_ppo"] > 0 and v["evaluation"] > 0 for v in fans.values())
    assert set(bench.TARGETS) < set(result["config"]["targets_met"])
    assert len(result["config"]["targets_met"]) == len(bench.TARGETS) + 2 + 4
    deep = result["config"]["deep_policy_fast_ppo"]  # the shipped policy, fused kernel and torch side by side
    assert set(deep) == {"fused", "torch"} and all(d["agent_steps_per_s"] > 0 for d in deep.values())


def rates_of(result, key):
    return result["agent_steps_per_s"][key]
