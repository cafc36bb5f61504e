"""What a researcher looks at, logged from RLlib into Tune results and TensorBoard.

:class:`InnerLossCallbacks` adds, per finished episode (one inner training run), under
``result["env_runners"]``:

- ``inner_loss_final``: the inner loss at the end of the episode;
- ``inner_loss_initial``: the loss of the freshly initialized network;
- ``inner_loss_improvement``: initial minus final (positive: the learned rule lowered the loss);
- ``inner_diverged``: the fraction of episodes that ended by divergence;
- ``neuron_return_mean``: the episode return per neuron (the sum of all agents' rewards / agents);
- ``neuron_reward_mean``: the mean reward per neuron and step.

Each is a windowed mean, so Tune's TensorBoard logger writes them to the trial's event file as
``ray/tune/env_runners/inner_loss_final`` and so on.

On algorithm start the shared policy's per-feature input scales are calibrated
(``SynapsePolicy.calibrate``) from one episode of the untrained policy, as the fast path does, and
synced to the env runners; :class:`UncalibratedCallbacks` leaves them at 1.

:class:`AggregateMetricsEnvRunner` drops RLlib's per-agent metrics (``agent_episode_returns_mean``,
``agent_steps``, ``num_agent_steps_sampled``, ``num_agent_steps_sampled_lifetime``: four keys per
agent per iteration, hundreds for a modest network); the agent-step counters are kept as one
aggregate (``.../all_agents``), and the per-module and aggregate metrics stay.
"""

from __future__ import annotations

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.utils.metrics import (
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
)

ALL_AGENTS = "all_agents"


class AggregateMetricsEnvRunner(MultiAgentEnvRunner):
    """A ``MultiAgentEnvRunner`` that reports module-level and aggregate metrics only.

    Per-agent episode returns and step counts are not logged; the agent-step counters (which
    RLlib's sampling loop sums to count ``agent_steps``) are logged under one aggregate key,
    ``ALL_AGENTS``, instead of one key per agent. Overrides two hooks of ray 2.60's
    ``MultiAgentEnvRunner`` (pinned in constraints.txt).
    """

    def _increase_sampled_metrics(self, num_steps, next_obs, episode):
        self.metrics.log_value(NUM_ENV_STEPS_SAMPLED, num_steps, reduce="sum")
        self.metrics.log_value(NUM_ENV_STEPS_SAMPLED_LIFETIME, num_steps, reduce="lifetime_sum", with_throughput=True)
        if episode.is_done:
            self.metrics.log_value(NUM_EPISODES, 1, reduce="sum")
            self.metrics.log_value(NUM_EPISODES_LIFETIME, 1, reduce="lifetime_sum")
        n = len(next_obs)
        if n:
            self.metrics.log_value((NUM_AGENT_STEPS_SAMPLED, ALL_AGENTS), n, reduce="sum")
            self.metrics.log_value((NUM_AGENT_STEPS_SAMPLED_LIFETIME, ALL_AGENTS), n, reduce="lifetime_sum")
        per_module: dict = {}
        for aid in next_obs:
            mid = episode.module_for(aid)
            per_module[mid] = per_module.get(mid, 0) + 1
        for mid, count in per_module.items():
            self.metrics.log_value((NUM_MODULE_STEPS_SAMPLED, mid), count, reduce="sum")
            self.metrics.log_value((NUM_MODULE_STEPS_SAMPLED_LIFETIME, mid), count, reduce="lifetime_sum")
        return num_steps

    def _log_episode_metrics(self, length, ret, sec, agents=None, modules=None, agent_steps=None):
        # Empty per-agent dicts log nothing; the per-module returns stay.
        super()._log_episode_metrics(length, ret, sec, agents={}, modules=modules, agent_steps={})


def calibrate_algorithm(algorithm) -> None:
    """Set the shared policy's feature scales from sample observations and sync them to runners."""
    import torch

    from marl_net.config import EnvConfig
    from marl_net.evaluation import sample_observations
    from marl_net.policies.rllib_module import SHARED_MODULE_ID

    env_config = EnvConfig.from_kwargs(**{k: v for k, v in dict(algorithm.config.env_config).items()
                                          if k != "crash_probability"})
    seed = int(algorithm.config.seed or 0)

    def calibrate(learner):
        policy = learner.module[SHARED_MODULE_ID].policy
        return policy.calibrate(sample_observations(policy, env_config, seed=seed)).tolist()

    scales = [result.get() for result in algorithm.learner_group.foreach_learner(calibrate)][0]

    def apply(runner):  # synchronous, unlike sync_weights' fire-and-forget to remote runners
        runner.module[SHARED_MODULE_ID].policy.feature_scale.copy_(torch.tensor(scales))

    algorithm.env_runner_group.foreach_env_runner(apply, local_env_runner=True)


def _adapter(env, env_index: int):
    """Our ``ParallelEnvAdapter`` inside RLlib's gymnasium vector env."""
    sub = getattr(env, "envs", None)
    inner = sub[env_index] if sub is not None else env
    return getattr(inner, "unwrapped", inner)


class InnerLossCallbacks(RLlibCallback):
    calibrate_features = True

    def on_algorithm_init(self, *, algorithm, metrics_logger=None, **kwargs):
        """Calibrate the shared policy's per-feature input scales (``SynapsePolicy.calibrate``) on
        one episode of the untrained policy, on the learner and every env runner, unless the
        launch set ``run.calibrate_features: false``. A restored algorithm loads its saved scales
        over these afterwards."""
        if not self.calibrate_features:
            return
        calibrate_algorithm(algorithm)

    def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, env=None, env_index=0, **kwargs):
        summary = getattr(_adapter(env, env_index), "episode_summary", None)
        if metrics_logger is None or not summary or summary.get("final_loss") is None:
            return
        agents = max(int(summary["num_agents"]), 1)
        ret = float(episode.get_return())
        for chunk in kwargs.get("prev_episode_chunks") or []:
            ret += float(chunk.get_return())
        steps = max(int(episode.env_t), 1)
        values = {
            "inner_loss_final": summary["final_loss"],
            "inner_loss_initial": summary["initial_loss"],
            "inner_loss_improvement": summary["initial_loss"] - summary["final_loss"],
            "inner_diverged": float(summary["diverged"]),
            "neuron_return_mean": ret / agents,
            "neuron_reward_mean": ret / agents / steps,
        }
        for key, value in values.items():
            metrics_logger.log_value(key, float(value), reduce="mean", window=100)


class UncalibratedCallbacks(InnerLossCallbacks):
    """:class:`InnerLossCallbacks` without the feature calibration (``run.calibrate_features: false``)."""

    calibrate_features = False
