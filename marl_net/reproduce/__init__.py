"""Reproductions of published experiments.

- :mod:`marl_net.reproduce.chung`: Chung (2022), "Learning by Competition of Self-Interested
  Reinforcement Learning Agents" (Weight Maximization), Table 1 -- run with
  ``marl-net reproduce chung --task multiplexer``.
"""
