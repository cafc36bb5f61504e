"""Weight perturbation (WP), exactly as in Cai & Cheng section 4, batched over E copies.

Two forward passes on the step's minibatch: the clean one (loss ``E``) and one with every weight
perturbed by Gaussian noise ``Xi^(l)`` (loss ``E_W``):

    X^^(l+1) = f(X^^(l) (W_l + Xi^(l))^T),      Xi^(l) ~ N(0, sigma) i.i.d., shape [n_{l+1}, n_l]
    dW_l     = eta / sigma * (E - E_W) * Xi^(l)

With ``bias=True`` the biases (the last weight-space column) are perturbed and updated too.
**sigma is the variance** of the noise (std ``sqrt(sigma)``), as for NP: the expected update is then,
to first order, the SGD update with the same eta (``<dW> = -eta dE/dW``).

Noise comes from the copies' noise generators (``seed_from(seed, 1)``): one ``randn([rows, cols])``
per layer in layer order, drawn at each step after the clean forward pass, exactly as the
environment's ``wp_perturbation`` / ``wp_error`` observation features draw it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from marl_net import losses, seeding
from marl_net.context import StepContext
from marl_net.network import NetworkSpec, forward, split_bias
from marl_net.rules.common import PerturbationRule, check_sigma
from marl_net.rules.node_perturbation import PerturbationSignal


def weight_perturbation(spec: NetworkSpec, params: Sequence[torch.Tensor], inputs: torch.Tensor,
                        targets: torch.Tensor, loss_name: str, clean_loss: torch.Tensor,
                        noise: Sequence[torch.Tensor]) -> PerturbationSignal:
    """WP's signal for given weight-space noise ``noise[l]`` (already scaled: std sqrt(sigma))."""
    weights, biases = split_bias(spec, [p + xi for p, xi in zip(params, noise)])
    perturbed = forward(spec, weights, inputs, biases)
    error = clean_loss - losses.compute(loss_name, perturbed.output, targets)
    return PerturbationSignal(error, list(noise))


def draw_weight_noise(ctx: StepContext, sigma: float) -> list[torch.Tensor]:
    std = check_sigma(sigma) ** 0.5
    return [seeding.randn(ctx.noise_generators, p.shape[1:], device=p.device, dtype=p.dtype) * std for p in ctx.params]


def signal(ctx: StepContext, sigma: float) -> PerturbationSignal:
    """WP's signal for the step in ``ctx`` (noise drawn once, cached for features and trainer)."""

    def compute():
        if "bernoulli" in (ctx.spec.hidden_activation, ctx.spec.output_activation):
            raise ValueError("WP features replay the forward pass and need deterministic units: use "
                             "hidden_activation='tanh' (or relu/sigmoid) with them")
        noise = draw_weight_noise(ctx, sigma)
        return weight_perturbation(ctx.spec, ctx.params, ctx.inputs, ctx.targets, ctx.loss_name, ctx.loss, noise)

    return ctx.cached(f"weight_perturbation/{sigma!r}", compute)


class WeightPerturbation(PerturbationRule):
    """WP as a rule. ``lr``: eta (one float or one per copy); ``sigma``: the noise variance."""

    name = "wp"
    signal = staticmethod(signal)
