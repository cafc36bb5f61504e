"""PettingZoo environments of marl_net (installed as ``marl_net.envs``)."""
