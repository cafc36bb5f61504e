"""E copies of a layered feed-forward network as batched torch tensors.

Layer sizes ``(n_0, n_1, ..., n_L)``. Weight ``W_l`` maps layer l to layer l+1 and has shape
``[E, n_{l+1}, n_l]`` (Cai & Cheng's ``W_l in R^{R_{l+1} x R_l}``, with a leading copy dimension);
biases, when enabled, are ``[E, n_{l+1}]``. The forward pass is Cai & Cheng eq. (1),
``X^(l+1) = sigma(X^(l) W_l^T + b_l)``, for every copy at once; the output layer has its own
activation (``linear`` by default, so cross-entropy sees logits).

Activations: relu, tanh, sigmoid, linear, and ``bernoulli``: Bernoulli-logistic stochastic units
(Chung 2022), ``h ~ Bernoulli(sigmoid(z))``, sampled from per-copy generators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from marl_net import seeding

ACTIVATIONS = {
    "relu": "max(z, 0)",
    "tanh": "tanh(z)",
    "sigmoid": "1 / (1 + exp(-z))",
    "linear": "z",
    "bernoulli": "Bernoulli-logistic stochastic unit: 1 with probability sigmoid(z), else 0",
}


@dataclass(frozen=True)
class NetworkSpec:
    """Shape and nonlinearity of a layered network (the same for all E copies)."""

    layers: tuple[int, ...]
    hidden_activation: str = "tanh"
    output_activation: str = "linear"
    bias: bool = False
    init_gain: float = 1.0  # weights ~ N(0, init_gain^2 / fan_in)

    def __post_init__(self):
        layers = tuple(int(n) for n in self.layers)
        if len(layers) < 2:
            raise ValueError(f"layers={self.layers!r}: give at least an input and an output size, e.g. (8, 16, 4)")
        if any(n < 1 for n in layers):
            raise ValueError(f"layers={self.layers!r}: every layer needs at least one neuron")
        for name in ("hidden_activation", "output_activation"):
            act = getattr(self, name)
            if act not in ACTIVATIONS:
                raise ValueError(f"{name}={act!r} is unknown; choose one of {sorted(ACTIVATIONS)}")
        if not (self.init_gain > 0):
            raise ValueError(f"init_gain={self.init_gain!r} must be positive")
        object.__setattr__(self, "layers", layers)

    @property
    def num_layers(self) -> int:
        """Number of weight matrices L."""
        return len(self.layers) - 1

    def activation(self, layer: int) -> str:
        """Activation of the units that weight matrix ``layer`` feeds."""
        return self.output_activation if layer == self.num_layers - 1 else self.hidden_activation

    @property
    def num_weights(self) -> int:
        return sum(a * b for a, b in zip(self.layers[:-1], self.layers[1:]))


def activate(z: torch.Tensor, name: str, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    if name == "relu":
        return torch.relu(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "linear":
        return z
    if name == "bernoulli":
        if uniforms is None:
            raise ValueError("bernoulli units need random draws: pass generators to forward()")
        return (uniforms < torch.sigmoid(z)).to(z.dtype)
    raise ValueError(f"activation {name!r} is unknown; choose one of {sorted(ACTIVATIONS)}")


@dataclass
class ForwardPass:
    """Everything a forward pass computed, layer by layer.

    ``activity[0]`` is the input and ``activity[l + 1]`` the output of weight layer l, each
    ``[E, B, n]``; ``preact[l]`` is the pre-activation ``z`` that weight layer l produces.
    """

    activity: list[torch.Tensor]
    preact: list[torch.Tensor] = field(default_factory=list)

    @property
    def output(self) -> torch.Tensor:
        return self.activity[-1]


def forward(
    spec: NetworkSpec,
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    biases: Sequence[torch.Tensor] | None = None,
    node_noise: Sequence[torch.Tensor | None] | None = None,
    generators: Sequence[torch.Generator] | None = None,
    bernoulli_uniforms: Sequence[torch.Tensor | None] | None = None,
    preact_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
) -> ForwardPass:
    """Batched forward pass of E copies: ``x`` is ``[E, B, n_0]``.

    ``node_noise[l]`` (``[E, B, n_{l+1}]``), when given, is added to layer l's pre-activation
    (node perturbation). Weight perturbation passes perturbed ``weights``. Bernoulli units draw
    their uniforms from ``generators``, or take them from ``bernoulli_uniforms[l]``
    (``[E, B, n_{l+1}]``) when given (the RL core's ``rl_draws="chung"``). ``preact_fn(h, W, b)``,
    when given, computes each layer's pre-activation instead of ``h W^T + b`` (the same sum in
    another order: the RL core's ``rl_draws="chung"`` passes Chung's actor's).
    """
    activity = [x]
    preact = []
    h = x
    for l, w in enumerate(weights):
        if preact_fn is not None:
            z = preact_fn(h, w, None if biases is None else biases[l])
        else:
            z = torch.matmul(h, w.transpose(-1, -2))
            if biases is not None:
                z = z + biases[l].unsqueeze(-2)
        if node_noise is not None and node_noise[l] is not None:
            z = z + node_noise[l]
        act = spec.activation(l)
        uniforms = None
        if act == "bernoulli":
            if bernoulli_uniforms is not None and bernoulli_uniforms[l] is not None:
                uniforms = bernoulli_uniforms[l]
            elif generators is None:
                raise ValueError("bernoulli units need random draws: pass generators to forward()")
            else:
                uniforms = seeding.rand(generators, z.shape[1:], device=z.device, dtype=z.dtype)
        h = activate(z, act, uniforms)
        preact.append(z)
        activity.append(h)
    return ForwardPass(activity=activity, preact=preact)


def init_weights(
    spec: NetworkSpec, generators: Sequence[torch.Generator], device=None, dtype=torch.float32
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Fresh weights for E = len(generators) copies: ``N(0, gain^2 / fan_in)``, zero biases."""
    weights = []
    for n_in, n_out in zip(spec.layers[:-1], spec.layers[1:]):
        w = seeding.randn(generators, (n_out, n_in), device=device, dtype=dtype) * (spec.init_gain / n_in**0.5)
        weights.append(w)
    biases = None
    if spec.bias:
        e = len(generators)
        biases = [torch.zeros(e, n, device=device or generators[0].device, dtype=dtype) for n in spec.layers[1:]]
    return weights, biases


def split_bias(spec: NetworkSpec, params: Sequence[torch.Tensor]):
    """Weight-space parameters ``[E, n_{l+1}, n_l (+1)]`` -> ``(weights, biases or None)``.

    With ``spec.bias`` the last column of each layer's parameters is its bias (the weight of a
    constant-1 input), which is how the environment stores and hands out biases.
    """
    if not spec.bias:
        return list(params), None
    return [p[..., :-1] for p in params], [p[..., -1] for p in params]


def join_bias(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
    """Inverse of :func:`split_bias`."""
    if biases is None:
        return list(weights)
    return [torch.cat([w, b.unsqueeze(-1)], dim=-1) for w, b in zip(weights, biases)]


def with_ones(x: torch.Tensor) -> torch.Tensor:
    """Append a constant-1 column (the bias input) to activities ``[E, B, n]``."""
    return torch.cat([x, x.new_ones(x.shape[:-1] + (1,))], dim=-1)
