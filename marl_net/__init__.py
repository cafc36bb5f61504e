"""marl_net: neural networks trained as societies of agents."""
__version__ = "0.1.0"
