"""``build_ppo_config(launch)``: an RLlib ``PPOConfig`` from a launch dict (see ``marl_net.experiment``).

A launch dict has the sections ``env`` (:class:`marl_net.config.EnvConfig` keyword arguments),
``policy`` (:class:`marl_net.policies.synapse_policy.PolicyConfig` fields but ``num_features``,
which follows from the env), ``ppo`` (any argument of ``PPOConfig.training``, ``.env_runners``,
``.learners``, ``.resources``, ``.fault_tolerance``, ``.reporting``, e.g. ``lr``, ``lambda_``,
``num_epochs``, ``minibatch_size``, ``train_batch_size``, ``num_env_runners``,
``num_cpus_per_env_runner``, ``custom_resources_per_env_runner``, ``restart_failed_env_runners``)
and ``run`` (of which ``seed`` and ``calibrate_features`` are used here: the policy's feature
scales are calibrated on one episode of the untrained policy unless ``calibrate_features`` is
false). Defaults that matter on a small machine: one
remote env runner with one CPU, the learner on the trial's driver (one CPU): a trial needs 2 CPUs.

Fixed choices: the new API stack; one :class:`SynapseRLModule` shared by all neurons
(``MultiRLModuleSpec`` + ``policy_mapping_fn``); ``count_steps_by="agent_steps"`` (a batch of
2000 is 2000 neuron decisions); per-agent metrics dropped; the inner-loss callback on; failed env
runners restarted.

Values may be ``{"grid_search": [...]}``: :func:`param_space` turns such a launch into Tune's
``param_space`` (a dict with Tune grid entries), while :func:`build_ppo_config` needs concrete
values (it uses the first grid value where it finds a grid).

Example::

    from marl_net.rllib.algo import build_ppo_config
    config = build_ppo_config({"env": {"reward": "difference"}, "ppo": {"lr": 1e-3}})
    algo = config.build_algo(); algo.train()
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from ray.rllib.algorithms.ppo import PPOConfig

from marl_net.config import EnvConfig
from marl_net.launch_keys import check_ppo_keys, is_grid
from marl_net.policies.rllib_module import policy_mapping_fn, shared_module_spec
from marl_net.rllib.callbacks import AggregateMetricsEnvRunner, InnerLossCallbacks, UncalibratedCallbacks
from marl_net.rllib.env import NetworkWeightsRLlibEnv

# The PPOConfig setter methods a launch's ``ppo`` section may reach, searched in this order (their
# arguments are listed in marl_net.launch_keys.RLLIB_PPO_SETTINGS, which check_ppo_keys reads).
PPO_SECTIONS = ("training", "env_runners", "learners", "resources", "fault_tolerance", "reporting")
# Set by build_ppo_config itself; a launch must not override them.
RESERVED = {"env", "env_config", "env_runner_cls", "policies", "policy_mapping_fn", "rl_module_spec", "callbacks"}

DEFAULT_PPO: dict[str, Any] = {
    "num_env_runners": 1,
    "num_cpus_per_env_runner": 1,
    "num_learners": 0,
    "restart_failed_env_runners": True,
    "train_batch_size": 2000,
    "minibatch_size": 256,
    "num_epochs": 4,
    "lr": 3.0e-4,
}


def first_values(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """``section`` with every grid replaced by its first value."""
    return {k: (list(v["grid_search"])[0] if is_grid(v) else v) for k, v in (section or {}).items()}


def _setters(config: PPOConfig) -> dict[str, str]:
    """ppo key -> name of the PPOConfig method that takes it."""
    where: dict[str, str] = {}
    for method in PPO_SECTIONS:
        for cls in type(config).__mro__:  # PPOConfig.training passes **kwargs on to AlgorithmConfig's
            if method in vars(cls):
                for name in inspect.signature(vars(cls)[method]).parameters:
                    if name not in ("self", "kwargs") and name not in RESERVED:
                        where.setdefault(name, method)
    return where


def check_ppo_values(ppo: Mapping[str, Any]) -> None:
    """Values of a ``ppo`` section (no grids left) for the RLlib path, ValueError naming the fix: a
    setting whose PPOConfig default is a boolean takes a boolean, one whose default is a number
    takes a number (or null, or a list: RLlib's schedules), and the settings the fast path shares
    (``lr``, ``gamma``, ``lambda_``, ``num_epochs``, ``minibatch_size``, ...) obey its ranges
    (:class:`marl_net.fast.ppo.FastPPOConfig`)."""
    from marl_net.fast.ppo import FastPPOConfig
    from marl_net.validation import check_value

    defaults = PPOConfig()
    for key, value in ppo.items():
        default = getattr(defaults, key, None)
        if isinstance(default, bool):
            check_value(key, value, bool)
        elif isinstance(default, (int, float)) and value is not None and not isinstance(value, (list, tuple)):
            check_value(key, value, float)
    shared = {f for f in FastPPOConfig.__dataclass_fields__ if f not in ("device", "copies")}
    FastPPOConfig(**{k: v for k, v in ppo.items() if k in shared and v is not None and not isinstance(v, (list, tuple))})


def build_ppo_config(launch: Mapping[str, Any]) -> PPOConfig:
    """The PPOConfig of a launch dict (sections ``env``, ``policy``, ``ppo``, ``run``; all optional)."""
    env = first_values(launch.get("env"))
    policy = first_values(launch.get("policy"))
    ppo = {**DEFAULT_PPO, **first_values(launch.get("ppo"))}
    run = launch.get("run") or {}
    env_config = EnvConfig.from_kwargs(**env)  # fail here, with the env's own message, not inside a remote runner
    check_ppo_keys(ppo)

    spec = shared_module_spec(policy, max_cycles=env_config.max_cycles)  # a recurrent module's max_seq_len
    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(NetworkWeightsRLlibEnv, env_config=env)
        .multi_agent(policies=set(spec.rl_module_specs), policy_mapping_fn=policy_mapping_fn,
                     count_steps_by="agent_steps")
        .rl_module(rl_module_spec=spec)
        .env_runners(env_runner_cls=AggregateMetricsEnvRunner)
        .callbacks(InnerLossCallbacks if run.get("calibrate_features", True) else UncalibratedCallbacks)
    )
    where = _setters(config)
    by_method: dict[str, dict[str, Any]] = {}
    for key, value in ppo.items():
        by_method.setdefault(where[key], {})[key] = value
    for method, kwargs in by_method.items():
        config = getattr(config, method)(**kwargs)
    if run.get("seed") is not None and not is_grid(run["seed"]):
        config = config.debugging(seed=int(run["seed"]))
    return config


def param_space(launch: Mapping[str, Any]) -> dict[str, Any]:
    """Tune's ``param_space`` for ``tune.Tuner(PPO, param_space=...)``: the built config as a dict,
    with the launch's grids (in ``env``, ``ppo`` and ``run.seed``) put back as Tune grid entries."""
    from ray import tune

    space = build_ppo_config(launch).to_dict()
    recurrent = first_values(launch.get("policy")).get("memory", "none") != "none"
    if recurrent and is_grid((launch.get("env") or {}).get("max_cycles")):
        raise ValueError("env.max_cycles cannot be grid-searched with a recurrent policy on the RLlib path (its "
                         "max_seq_len follows the first value); launch one experiment per max_cycles")
    for key, value in (launch.get("env") or {}).items():
        if is_grid(value):
            for choice in value["grid_search"]:  # every grid value must make a valid env
                EnvConfig.from_kwargs(**{**first_values(launch.get("env")), key: choice})
            space["env_config"][key] = tune.grid_search(list(value["grid_search"]))
    for key, value in (launch.get("ppo") or {}).items():
        if is_grid(value):
            name = key.rstrip("_") if key.rstrip("_") in space else key
            if name not in space:
                raise ValueError(f"ppo.{key} cannot be grid-searched (not a top-level PPOConfig value); set one value")
            space[name] = tune.grid_search(list(value["grid_search"]))
    for key, value in (launch.get("policy") or {}).items():
        if is_grid(value):
            raise ValueError(f"policy.{key} cannot be grid-searched on the RLlib path (the module spec is an object); "
                             "launch one experiment per value")
    seed = (launch.get("run") or {}).get("seed")
    if is_grid(seed):
        space["seed"] = tune.grid_search([int(s) for s in seed["grid_search"]])
    return space
