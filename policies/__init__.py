"""Policies of marl_net (installed as ``marl_net.policies``): the shared per-neuron actor-critic,
its RLlib RLModule, and hand-designed rules as policies."""
