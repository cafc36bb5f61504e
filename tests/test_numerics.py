"""Numerics you can name: the kernels are built without fast-math (a NaN reaches the policy's
outputs as on the torch path), the switch is a setting that wins over ``MARL_NET_FUSED``, and the
record names what ran, how it was compiled, torch and the CPU."""

import math

import pytest
import torch

from marl_net import numerics
from marl_net.policies import fused_actor_critic, fused_layer
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy


def _policy_and_obs():
    torch.manual_seed(0)
    policy = SynapsePolicy(PolicyConfig(num_features=6, hidden=32, depth=2))
    obs = torch.randn(16, 4, 6)
    obs[..., -1] = 1.0
    return policy, obs


def test_no_fast_math_in_any_kernel_build():
    from marl_net import observation_rows
    from marl_net.policies import fused_gru

    for flags in (fused_layer.FLAGS, observation_rows.FLAGS, fused_gru.FLAGS):
        assert not any("fast-math" in f or f.startswith("-Ofast") or f.startswith("-mrecip") for f in flags), flags


def test_a_nan_observation_reaches_the_kernels_outputs_as_it_does_torchs():
    """Under -ffast-math the kernel's tanh clamp turned a NaN feature into a saturated, finite
    activation: the action, log-density and value of that agent came out finite (measured with
    the old flags: value -0.054 where torch gives NaN). IEEE arithmetic keeps it NaN, so the env's
    and PPO's NaN checks can see it."""
    policy, obs = _policy_and_obs()
    obs[3, 1, 0] = float("nan")
    assert fused_actor_critic.applies(policy, obs)
    actions = torch.empty(16, 4)
    with numerics.recording() as ran:
        logp, value = fused_actor_critic.sample(policy, obs, torch.randn(16, 4), actions)
    assert ran == {numerics.POLICY_KERNEL}
    with numerics.kernels(False):
        assert not fused_actor_critic.applies(policy, obs)
        with torch.no_grad():
            _, _, torch_value = policy(obs)
    assert math.isnan(torch_value[3]) and math.isnan(value[3]) and math.isnan(logp[3]) and actions[3].isnan().all()
    others = torch.arange(16) != 3
    assert torch.isfinite(value[others]).all() and torch.isfinite(actions[others]).all()
    torch.testing.assert_close(value[others], torch_value[others], rtol=1e-5, atol=1e-6)


def test_recordings_close_by_identity_even_when_their_sets_are_equal():
    """A recording closes its own set, not the first equal one: an inner recording that closes
    while its set equals the outer one's (nothing ran in between) left the outer one's set out of
    the record (``list.remove`` took the first equal set), so what ran next was not recorded for
    the outer block and its exit raised ValueError (seen in ``marl-net bench throughput``)."""
    numerics.record_ran("test_kernel_a")
    opened = len(numerics._ran)
    with numerics.recording() as outer:
        with numerics.recording() as inner:
            pass
        numerics.record_ran("test_kernel_b")
    assert outer == {"test_kernel_b"} and inner == set() and len(numerics._ran) == opened
    assert {"test_kernel_a", "test_kernel_b"} <= numerics._ran[0]


def test_the_switch_is_a_setting_that_wins_over_the_environment_variable(monkeypatch):
    monkeypatch.delenv(numerics.KERNEL_ENV, raising=False)
    assert numerics.kernel_setting() == {"on": True, "source": "default"}
    monkeypatch.setenv(numerics.KERNEL_ENV, "0")
    assert numerics.kernel_setting() == {"on": False, "source": numerics.KERNEL_ENV} and not numerics.kernels_on()
    with numerics.kernels(True):
        assert numerics.kernel_setting() == {"on": True, "source": "set"} and numerics.kernels_on()
        policy, obs = _policy_and_obs()
        assert fused_actor_critic.applies(policy, obs)
    assert numerics.kernel_setting()["source"] == numerics.KERNEL_ENV  # restored
    with pytest.raises(ValueError, match="pass True"):
        numerics.set_kernels("no")


def test_the_record_names_the_path_that_ran_its_build_torch_and_the_cpu():
    policy, obs = _policy_and_obs()
    with numerics.recording() as ran:
        with torch.no_grad():
            policy(obs)
    record = numerics.describe("cpu", ran)
    assert record["policy_path"] == "fused kernel" and record["kernels_ran"] == [numerics.POLICY_KERNEL]
    build = record["kernel_builds"][numerics.POLICY_KERNEL]
    assert build["flags"][1:] == fused_layer.FLAGS and build["compiler"]
    assert record["torch"] == torch.__version__ and record["cpu"] and record["device"] == "cpu"
    with numerics.kernels(False), numerics.recording() as ran:
        with torch.no_grad():
            policy(obs)
        record = numerics.describe("cpu", ran)
    assert record["policy_path"] == "torch" and record["kernels_ran"] == [] and record["kernel_builds"] == {}
    assert record["kernels"] == {"on": False, "source": "set"}


@pytest.mark.parametrize("on", [True, False])
def test_a_fast_path_checkpoint_records_the_path_its_iterations_took(tmp_path, on):
    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    ppo = FastPPOConfig(copies=2, rollout_steps=3, minibatch_size=64, num_epochs=1)
    with numerics.kernels(on):
        trainer = FastPPO({"layers": (4, 6, 2), "max_cycles": 3, "batch_size": 4}, {"hidden": 16}, ppo, seed=0)
        trainer.train()
    saved = torch.load(trainer.save(str(tmp_path)), weights_only=False)["numerics"]
    assert saved["policy_path"] == ("fused kernel" if on else "torch")
    assert saved["kernels_ran"] == (["observation_rows", "synapse_kernel"] if on else [])


def test_a_fast_ppo_run_on_two_kernel_threads_equals_the_one_thread_run():
    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    env = {"layers": (8, 16, 4), "max_cycles": 4, "batch_size": 8}
    trainers = [FastPPO(env, {"hidden": 32, "depth": 2},
                        FastPPOConfig(copies=16, rollout_steps=4, minibatch_size=512, num_epochs=2, kernel_threads=t),
                        seed=0) for t in (1, 2)]
    try:
        for _ in range(2):
            for trainer in trainers:
                trainer.train()
    finally:
        numerics.set_kernel_threads(1)
    one, two = (t.policy.state_dict() for t in trainers)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert all(torch.equal(a, b) for a, b in zip(trainers[0].obs, trainers[1].obs, strict=True))  # one per block
    assert trainers[1].state_dict()["numerics"]["kernel_threads"] == 2
    with pytest.raises(ValueError, match="kernel_threads"):
        FastPPOConfig(kernel_threads=0)


def test_a_kernel_is_rebuilt_when_a_header_it_includes_changes(tmp_path, monkeypatch):
    """The build cache's key covers the files a source includes with quotes (the two kernels share
    policies/simd.h): a changed header gives another library, not a stale one."""
    import ctypes

    from marl_net import native

    monkeypatch.setenv("MARL_NET_KERNEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "value.h").write_text("#pragma once\nconstexpr int VALUE = 1;\n")
    source = tmp_path / "kernel.cpp"
    source.write_text('#include "value.h"\nextern "C" int value() { return VALUE; }\n')
    assert native.sources(source) == [source, tmp_path / "value.h"]
    first = native.build(source, ["-O1", "-fPIC", "-shared"])
    (tmp_path / "value.h").write_text("#pragma once\nconstexpr int VALUE = 2;\n")
    second = native.build(source, ["-O1", "-fPIC", "-shared"])
    assert first != second
    assert [ctypes.CDLL(str(p)).value() for p in (first, second)] == [1, 2]
    # the shipped kernels' sources: each with the shared header
    from marl_net.policies import fused_gru

    for kernel in (fused_layer.SOURCE, fused_gru.SOURCE):
        assert [p.name for p in native.sources(kernel)] == [kernel.name, "simd.h"]
