"""Node perturbation (NP), exactly as in Cai & Cheng section 4, batched over E copies.

Two forward passes on the step's minibatch: the clean one (the environment's own, loss ``E``) and
one with Gaussian noise ``xi^(l)`` added to every layer's pre-activation (loss ``E_N``):

    X~^(l+1) = f(X~^(l) W_l^T + xi^(l)),        xi^(l) ~ N(0, sigma) i.i.d., shape [B, n_{l+1}]
    dW_l     = eta / sigma * (E - E_N) * sum_b xi_b^(l) x_b^(l)T

``x^(l)`` is the *clean* presynaptic activity (the paper writes x, not x~), with a constant-1 entry
appended when the network has biases. The paper's sum index (written ``i = 1..R_{l+1}``) multiplies
per-sample vectors ``x_i xi_i^T``, so we read it as the sum over the minibatch's samples; that is also
the reading under which the expected update is the SGD update (below). Indexing: our ``W_l`` maps layer l to l+1, so our
``xi^(l)`` is the paper's ``xi^(l+1)``.

**sigma is the variance** of the perturbation (the paper's ``N(0, sigma)``; the noise's standard
deviation is ``sqrt(sigma)``). With that reading ``eta/sigma`` makes the expected update, to first
order in the noise, exactly the SGD update with the same eta: ``<dW> = -eta dE/dW`` (the paper's
``<Delta_NP W> = Delta_SGD W``); ``tests/test_cai_rules.py`` checks it statistically.

Noise comes from the copies' noise generators (``seed_from(seed, 1)``), one
``randn([B, n_{l+1}])`` per layer in layer order, drawn at each step after the clean forward pass:
the same draws the environment's ``np_eligibility`` / ``np_error`` observation features make
(``marl_net.perturbation_features``), which is why NP as a trainer and NP as a policy in
``network_weights_v0`` end with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from marl_net import losses, seeding
from marl_net.context import StepContext
from marl_net.network import NetworkSpec, forward, split_bias, with_ones
from marl_net.rules.common import DEFAULT_SIGMA, PerturbationRule, check_sigma

__all__ = ["DEFAULT_SIGMA", "NodePerturbation", "PerturbationSignal", "node_perturbation", "signal"]


@dataclass
class PerturbationSignal:
    """What a perturbation rule broadcasts and keeps locally: the global error difference
    ``E - E_pert`` ``[E]`` and, per weight layer, the eligibility ``[E, rows, cols]``."""

    error: torch.Tensor
    eligibility: list[torch.Tensor]


def node_perturbation(spec: NetworkSpec, params: Sequence[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
                      loss_name: str, clean_activity: Sequence[torch.Tensor], clean_loss: torch.Tensor,
                      noise: Sequence[torch.Tensor]) -> PerturbationSignal:
    """NP's signal for given noise ``noise[l]`` ``[E, B, n_{l+1}]`` (already scaled: std sqrt(sigma)).

    ``clean_activity[l]`` ``[E, B, n_l]`` and ``clean_loss`` ``[E]`` come from the clean forward pass.
    """
    weights, biases = split_bias(spec, params)
    perturbed = forward(spec, weights, inputs, biases, node_noise=list(noise))
    error = clean_loss - losses.compute(loss_name, perturbed.output, targets)
    eligibility = []
    for l, xi in enumerate(noise):
        x = with_ones(clean_activity[l]) if spec.bias else clean_activity[l]
        eligibility.append(torch.matmul(xi.transpose(1, 2), x))  # sum_b xi_b x_b^T  [E, n_{l+1}, cols]
    return PerturbationSignal(error, eligibility)


def draw_node_noise(ctx: StepContext, sigma: float) -> list[torch.Tensor]:
    std = check_sigma(sigma) ** 0.5
    b = ctx.inputs.shape[1]
    return [seeding.randn(ctx.noise_generators, (b, n), device=ctx.inputs.device, dtype=ctx.inputs.dtype) * std
            for n in ctx.spec.layers[1:]]


def signal(ctx: StepContext, sigma: float) -> PerturbationSignal:
    """NP's signal for the step in ``ctx``: draws the noise once and caches it, so the observation
    features and the trainer see the same perturbation."""

    def compute():
        if "bernoulli" in (ctx.spec.hidden_activation, ctx.spec.output_activation):
            raise ValueError("NP features replay the forward pass and need deterministic units: use "
                             "hidden_activation='tanh' (or relu/sigmoid) with them")
        noise = draw_node_noise(ctx, sigma)
        return node_perturbation(ctx.spec, ctx.params, ctx.inputs, ctx.targets, ctx.loss_name,
                                 ctx.fwd.activity, ctx.loss, noise)

    return ctx.cached(f"node_perturbation/{sigma!r}", compute)


class NodePerturbation(PerturbationRule):
    """NP as a rule. ``lr``: eta (one float or one per copy); ``sigma``: the noise variance."""

    name = "np"
    signal = staticmethod(signal)
