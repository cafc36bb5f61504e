"""The RLlib path: the env adapter, the PPO config builder, callbacks and metrics.

Importing this package imports Ray; the rest of marl_net does not need it.
"""
