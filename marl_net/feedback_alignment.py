"""Feedback alignment: error signals for hidden units without weight transport, as observation features.

Backprop sends the output error back through the transposes of the forward weights ``W^T``, which
a synapse cannot know (weight transport). Feedback alignment (Lillicrap et al. 2016, ``"fa"``)
sends it back layer by layer through *fixed random* matrices ``B`` in place of ``W^T``; direct
feedback alignment (Nokland 2016, ``"dfa"``) sends the output error straight to every hidden layer
through its own fixed random matrix. The env option ``feedback="dfa" | "fa"`` (``EnvConfig``) picks
the family. Importing ``marl_net.config`` (or this module) registers three observation features:

- ``teaching_signal``: for synapses into an output unit, that unit's teaching signal averaged over
  the minibatch, ``e = 1/B sum_b dE_b/do_b`` with ``E = 1/B sum_b E_b`` the loss as
  ``marl_net.losses`` defines it: ``(o - y) / R`` for MSE (R output units), ``softmax(o) -
  onehot(y)`` for cross-entropy. Zero for synapses into hidden units.
- ``feedback_error``: the post-synaptic unit's feedback error (mean over the minibatch of the
  per-sample errors ``delta_b``): the teaching signal at output units; at the units of hidden layer
  k (the post-synaptic units of weight layer k - 1):

  * ``dfa``: ``delta_k = B_k d_L``, the output units' error ``d_L = e * f'(z_L)`` (``= e`` for
    linear outputs) sent straight through B_k ``[n_k, n_L]``;
  * ``fa``: ``delta_k = B_k d_{k+1}``, with ``d_{k+1} = delta_{k+1} * f'(z_{k+1})`` the layer
    above's error times its activation derivative and B_k ``[n_k, n_{k+1}]`` in place of
    ``W_k^T``: backprop's recursion with B for W^T.

  With one hidden layer the two coincide.
- ``feedback_eligibility``: per synapse, ``1/B sum_b x_b delta_b f'(z_b)`` (presynaptic activity x
  post-synaptic feedback error x the post-synaptic unit's activation derivative, bias input 1
  included): FA's / DFA's update direction in gradient sign (the rule subtracts it). In the output
  layer it is the delta rule, the existing ``output_gradient``, bit for bit; with FA's matrices set
  to ``W^T`` it is backprop's gradient bit for bit.

They are local three-factor signals, not privileged: a synapse gets its own presynaptic activity,
its own post-synaptic unit's derivative, and an error that reaches that unit through fixed
feedback wiring from the output units' teaching signals (the third, neuromodulator-like factor),
never the forward weights of other synapses. The env plays the feedback pathway's part.

Feedback matrices. Copy e draws its ``B_k`` (k = 1 .. L-1, one per hidden layer, in that order;
entries ``N(0, 1/fan)`` with fan = the matrix's number of columns, the number of error components
a hidden unit sums: ``n_L`` for DFA, ``n_{k+1}`` for FA, so a feedback error has the scale of the
error it comes from) from its **noise** generator at every reset of its network, after the reset's
data draws and before the reset's forward pass, and keeps them for the whole inner episode; they are
never learned. They are drawn only when a feedback feature is enabled (or an ``fa``/``dfa`` rule
runs in ``marl_net.rules.trainer``, at the same point of the stream), so no other seeded result
changes. They are env state (``NetworkWeightsCore.feedback``, saved with the fast path's state).

They need an activation derivative: Bernoulli (sampled) units are refused at ``EnvConfig``
construction. A network without hidden layers has no matrices; its features are the output layer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from marl_net import losses, seeding
from marl_net.network import NetworkSpec, activate, split_bias
from marl_net.features import register_feature

FEEDBACK_MODES = {
    "dfa": "direct feedback alignment (Nokland 2016): the output error straight to each hidden layer through B_k",
    "fa": "feedback alignment (Lillicrap et al. 2016): the error back layer by layer through B_k in place of W_k^T",
}
FEEDBACK_FEATURES = ("teaching_signal", "feedback_error", "feedback_eligibility")
DIFFERENTIABLE = ("linear", "relu", "sigmoid", "tanh")  # activations with a derivative


@dataclass
class Feedback:
    """The fixed feedback matrices of E copies: ``matrices[k - 1]`` is hidden layer k's ``[E, n_k, fan]``."""

    mode: str
    matrices: list[torch.Tensor]

    def select(self, index: torch.Tensor | None) -> "Feedback":
        return self if index is None else Feedback(self.mode, [b[index] for b in self.matrices])


def check_mode(mode: str) -> str:
    if mode not in FEEDBACK_MODES:
        raise ValueError(f"feedback={mode!r} is unknown; choose one of {sorted(FEEDBACK_MODES)}")
    return mode


def uses_feedback(observations: Sequence[str]) -> bool:
    """Whether any feedback feature is among ``observations`` (then the env draws feedback matrices)."""
    return any(name in FEEDBACK_FEATURES for name in observations)


def check_computable(spec: NetworkSpec, loss: str | None = None, what: str = "feedback features") -> None:
    """Refuse networks (and task losses) where FA/DFA signals are undefined, naming the valid choices."""
    bad = sorted({a for a in (spec.hidden_activation, spec.output_activation) if a not in DIFFERENTIABLE})
    if bad:
        raise ValueError(f"{what} need each unit's activation derivative, undefined for {bad} units: use "
                         f"hidden_activation and output_activation among {list(DIFFERENTIABLE)}, or drop "
                         f"{list(FEEDBACK_FEATURES)}")
    if loss is not None and loss not in losses.LOSSES:
        raise ValueError(f"{what} need a teaching signal dE/do; this task's loss {loss!r} has none: use a task "
                         f"with one of the losses {sorted(losses.LOSSES)}")


def matrix_shapes(spec: NetworkSpec, mode: str) -> list[tuple[int, int]]:
    """``(n_k, fan)`` of hidden layer k's feedback matrix, k = 1 .. L-1."""
    n = spec.layers
    last = len(n) - 1
    return [(n[k], n[last] if check_mode(mode) == "dfa" else n[k + 1]) for k in range(1, last)]


def draw_feedback(spec: NetworkSpec, mode: str, generators: Sequence[torch.Generator], device=None) -> Feedback:
    """Fresh feedback matrices for ``len(generators)`` copies, copy e from ``generators[e]`` (its noise
    generator): hidden layer 1 first, each ``N(0, 1/fan)``."""
    return Feedback(mode, [seeding.randn(generators, shape, device=device) * (1.0 / shape[1] ** 0.5)
                           for shape in matrix_shapes(spec, mode)])


@dataclass
class FeedbackSignals:
    teaching: torch.Tensor  # [E, n_L]: the output units' teaching signal, minibatch mean
    error: list[torch.Tensor]  # per weight layer l: [E, n_{l+1}], its post-synaptic units' feedback error
    eligibility: list[torch.Tensor]  # per weight layer l: [E, rows, cols] weight space


def signals(ctx) -> FeedbackSignals:
    """The step's FA/DFA signals from ``ctx.feedback`` (cached on the step context).

    One autograd pass over a copy of the forward pass in which every layer's input is detached
    (so no error travels through ``W``) and each feedback path adds ``f - f.detach()`` (exactly zero)
    to the pre-activation it feeds, ``f = a_k B_k``: its gradient carries ``d B_k^T`` to hidden
    layer k's activity. The weight gradients are then the feedback eligibilities and the activity
    gradients, summed over the minibatch, the feedback errors; the forward values (and the output
    layer's gradient) are untouched, which is why the output layer equals ``output_gradient``."""

    def compute():
        fb, spec = ctx.feedback, ctx.spec
        if fb is None:
            raise ValueError("feedback features need the env's feedback matrices: enable one of "
                             f"{list(FEEDBACK_FEATURES)} in observations= (the env then draws them at reset)")
        last = spec.num_layers - 1
        with torch.enable_grad():
            params = [p.detach().clone().requires_grad_(True) for p in ctx.params]
            weights, biases = split_bias(spec, params)
            acts = [ctx.inputs]
            for l, w in enumerate(weights):
                z = torch.matmul(acts[l].detach(), w.transpose(-1, -2))
                if biases is not None:
                    z = z + biases[l].unsqueeze(-2)
                sources = (range(1, last + 1) if l == last else ()) if fb.mode == "dfa" else ((l,) if l >= 1 else ())
                for k in sources:
                    f = torch.matmul(acts[k], fb.matrices[k - 1])  # [E, B, fan]: its gradient is d B_k^T
                    z = z + (f - f.detach())
                acts.append(activate(z, spec.activation(l)))
            loss = losses.compute(ctx.loss_name, acts[-1], ctx.targets).sum()  # copies are independent
            grads = torch.autograd.grad(loss, params + acts[1:], allow_unused=True)
        n = len(params)
        errors = [g.sum(1) if g is not None else a.new_zeros(a.shape[0], a.shape[2])
                  for g, a in zip(grads[n:], acts[1:])]
        return FeedbackSignals(errors[-1].detach(), [e.detach() for e in errors], [g.detach() for g in grads[:n]])

    return ctx.cached("feedback_signals", compute)


def eligibility(ctx) -> list[torch.Tensor]:
    """FA's / DFA's update direction per weight layer (gradient sign): ``signals(ctx).eligibility``."""
    return signals(ctx).eligibility


@register_feature("teaching_signal", "output units' teaching signal dE_b/do_b, minibatch mean, for synapses into "
                  "them ((o - y)/R for MSE, softmax(o) - onehot(y) for cross-entropy); zero elsewhere (local)")
def _teaching_signal(ctx, l):
    if l != ctx.spec.num_layers - 1:
        return ctx.loss.new_zeros(1, 1, 1)
    return signals(ctx).teaching.unsqueeze(2)


@register_feature("feedback_error", "the post-synaptic unit's feedback error, minibatch mean: the teaching signal "
                  "at output units, the error through fixed random feedback matrices at hidden units (FA/DFA; local)")
def _feedback_error(ctx, l):
    return signals(ctx).error[l].unsqueeze(2)


@register_feature("feedback_eligibility", "minibatch mean of presynaptic activity x post-synaptic feedback error x "
                  "its activation derivative: FA's/DFA's update direction (gradient sign; the delta rule at "
                  "output units; local)")
def _feedback_eligibility(ctx, l):
    return signals(ctx).eligibility[l]
