"""Names and shapes in a launch dict that both training paths check, without importing either path.

A leaf module: validating a fast-path launch (``marl_net.experiment.validate_launch``,
``marl_net.fast.ppo.FastPPOConfig.from_kwargs``) needs to know which ``ppo`` keys belong to
RLlib's ``PPOConfig`` (the fast path ignores them) and what a grid looks like, and importing RLlib
to find out costs seconds. :data:`RLLIB_PPO_SETTINGS` is the list of ``PPOConfig`` setter
arguments a launch may reach (``marl_net.rllib.algo.PPO_SECTIONS``), written out for the pinned
ray[rllib] version; ``tests/test_import_cycles.py`` holds it equal to what RLlib itself says.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping

# The arguments of PPOConfig.training, .env_runners, .learners, .resources, .fault_tolerance and
# .reporting (ray[rllib] 2.60.0) but those build_ppo_config sets itself (marl_net.rllib.algo.RESERVED).
RLLIB_PPO_SETTINGS = frozenset({
    '_fake_gpus', 'add_default_connectors_to_env_to_module_pipeline', 'add_default_connectors_to_learner_pipeline',
    'add_default_connectors_to_module_to_env_pipeline', 'batch_mode', 'broadcast_env_runner_states', 'clip_param',
    'compress_observations', 'create_env_on_local_worker', 'create_local_env_runner',
    'custom_resources_for_main_process', 'custom_resources_per_env_runner', 'custom_resources_per_learner',
    'custom_resources_per_worker', 'custom_stats_cls_lookup', 'delay_between_env_runner_restarts_s',
    'delay_between_worker_restarts_s', 'enable_connectors', 'enable_tf1_exec_eagerly', 'entropy_coeff',
    'entropy_coeff_schedule', 'env_runner_health_probe_timeout_s', 'env_runner_restore_timeout_s',
    'env_runner_state_server_max_concurrency', 'env_to_module_connector', 'episode_lookback_horizon',
    'episodes_to_numpy', 'exploration_config', 'explore', 'gamma', 'grad_clip', 'grad_clip_by',
    'gym_env_vectorize_mode', 'ignore_env_runner_failures', 'ignore_worker_failures',
    'keep_per_episode_custom_metrics', 'kl_coeff', 'kl_target', 'lambda_', 'learner_class', 'learner_config_dict',
    'learner_connector', 'local_gpu_idx', 'log_gradients', 'lr', 'lr_schedule', 'max_num_env_runner_restarts',
    'max_num_worker_restarts', 'max_requests_in_flight_per_aggregator_actor',
    'max_requests_in_flight_per_env_runner', 'max_requests_in_flight_per_learner',
    'max_requests_in_flight_per_sampler_worker', 'merge_env_runner_states', 'metrics_episode_collection_timeout_s',
    'metrics_num_episodes_for_smoothing', 'min_sample_timesteps_per_iteration', 'min_time_s_per_iteration',
    'min_train_timesteps_per_iteration', 'minibatch_size', 'model', 'module_to_env_connector',
    'num_aggregator_actors_per_learner', 'num_consecutive_env_runner_failures_tolerance',
    'num_consecutive_worker_failures_tolerance', 'num_cpus_for_local_worker', 'num_cpus_for_main_process',
    'num_cpus_per_env_runner', 'num_cpus_per_learner', 'num_cpus_per_learner_worker', 'num_cpus_per_worker',
    'num_env_runners', 'num_envs_per_env_runner', 'num_envs_per_worker', 'num_epochs', 'num_gpus',
    'num_gpus_per_env_runner', 'num_gpus_per_learner', 'num_gpus_per_learner_worker', 'num_gpus_per_worker',
    'num_learner_workers', 'num_learners', 'num_rollout_workers', 'num_sgd_iter', 'observation_filter', 'optimizer',
    'placement_strategy', 'preprocessor_pref', 'recreate_failed_env_runners', 'recreate_failed_workers',
    'remote_env_batch_wait_ms', 'remote_worker_envs', 'restart_failed_env_runners',
    'restart_failed_sub_environments', 'rollout_fragment_length', 'sample_collector', 'sample_timeout_s',
    'sampler_perf_stats_ema_coef', 'shuffle_batch_per_epoch', 'synchronize_filter', 'train_batch_size',
    'train_batch_size_per_learner', 'update_worker_filter_stats', 'use_critic', 'use_env_runner_state_server',
    'use_gae', 'use_kl_loss', 'use_worker_filter_stats', 'validate_env_runners_after_construction',
    'validate_workers_after_construction', 'vf_clip_param', 'vf_loss_coeff', 'vf_share_layers',
    'worker_health_probe_timeout_s', 'worker_restore_timeout_s',
})


def is_grid(value: Any) -> bool:
    """Whether ``value`` is a grid, ``{"grid_search": [...]}``."""
    return isinstance(value, Mapping) and set(value) == {"grid_search"}


def check_ppo_keys(ppo: Mapping[str, Any]) -> None:
    """ValueError naming the closest valid name for a ``ppo`` key that is no PPOConfig setting."""
    for key in ppo:
        if key not in RLLIB_PPO_SETTINGS:
            close = difflib.get_close_matches(key, sorted(RLLIB_PPO_SETTINGS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"ppo.{key} is not a PPOConfig setting{hint} (settings of PPOConfig.training, "
                             ".env_runners, .learners, .resources, .fault_tolerance, .reporting are accepted)")
