"""Observation features that make hand-designed rules expressible as policies in ``network_weights_v0``.

Registered whenever ``marl_net.observations`` is imported (it imports this module at its end).
Ask for them by name in ``observations=``:

- ``np_eligibility`` / ``np_error`` (node perturbation, Cai & Cheng): per synapse
  ``sum_b xi_b x_b^T`` (its postsynaptic node's perturbation times its clean presynaptic activity)
  and, as a global signal, ``E - E_N``, the clean minus the perturbed minibatch loss.
  ``np_update`` is their product, ``(E - E_N) * sum_b xi_b x_b^T``: NP's own update direction
  (NP's step is ``eta / sigma`` times it), the three factors already multiplied, which a policy
  network of tanh units only approximates from the two factors.
- ``wp_perturbation`` / ``wp_error`` (weight perturbation): per synapse its perturbation ``Xi`` and,
  globally, ``E - E_W``; ``wp_update`` is their product.
- ``bernoulli_eligibility``: a Bernoulli-logistic unit's REINFORCE eligibility for its incoming
  synapse, ``1/B sum_b (h_b - sigmoid(z_b)) x_b`` (zero for deterministic layers). Local.
- ``output_gradient``: for synapses into an output unit, ``dE/dw`` given the unit's (sampled)
  inputs (the output unit's own error times its inputs: the delta rule); zero elsewhere.

The perturbation features are local three-factor signals, not privileged: what a synapse gets is
its own postsynaptic node's noise (or its own weight's perturbation) times its own presynaptic
activity, plus one scalar broadcast to every synapse, the loss change the perturbation caused (a
neuromodulator-like global error, as ``rel_loss_change`` is). Cai & Cheng count these perturbation
rules among the biologically plausible alternatives to backprop, whose gradient (weight
transport) is the privileged signal here. The env plays the network's part: it draws the noise
and evaluates the perturbed pass on the same minibatch. They draw their noise from the copies' noise generators (``ctx.noise_generators``)
the first time any of a rule's features is computed in a step, layer by layer, and cache it, so
eligibility and error always belong to the same perturbation. The noise **variance** sigma is part
of the feature: the plain names use ``DEFAULT_SIGMA`` (1e-4, std 0.01); for another sigma call
:func:`feature_names`, which registers ``np_eligibility[sigma=...]`` etc. in this process (call it
in every process that builds such an env). Enable the features of one perturbation rule per env:
with both, the draw order follows the ``observations`` order.
"""

from __future__ import annotations

from marl_net.features import FEATURES, register_feature
from marl_net.rules import node_perturbation, weight_perturbation, weight_max_env
from marl_net.rules.common import check_sigma, perturbation_update
from marl_net.rules.node_perturbation import DEFAULT_SIGMA

PERTURBATION_FEATURES = {
    "np": ("np_eligibility", "np_error", "np_update"),
    "wp": ("wp_perturbation", "wp_error", "wp_update"),
}


def _global(t):
    return t.reshape(-1, 1, 1)


def _register(rule: str, sigma: float, suffix: str) -> tuple[str, str]:
    module = node_perturbation if rule == "np" else weight_perturbation
    local, error, update = (name + suffix for name in PERTURBATION_FEATURES[rule])
    if local in FEATURES:
        return local, error
    what = "sum_b xi_b x_b^T, node perturbation times presynaptic activity" if rule == "np" else \
        "Xi, the synapse's weight perturbation"
    register_feature(local, f"{rule.upper()} eligibility {what} (variance sigma={sigma:g}; local)",
                     privileged=False)(lambda ctx, l: module.signal(ctx, sigma).eligibility[l])
    register_feature(error, f"E - E_{'N' if rule == 'np' else 'W'}: clean minus {rule.upper()}-perturbed minibatch "
                     f"loss (global signal; variance sigma={sigma:g})",
                     privileged=False, global_signal=True)(lambda ctx, l: _global(module.signal(ctx, sigma).error))
    register_feature(update, f"{rule.upper()}'s update direction, (E - E_{'N' if rule == 'np' else 'W'}) times the "
                     f"eligibility (variance sigma={sigma:g}; local)",
                     privileged=False)(lambda ctx, l: _update(module.signal(ctx, sigma), l))
    return local, error


def _update(signal, layer: int):
    return perturbation_update(signal.error, signal.eligibility[layer], signal.error.new_ones(()))


def feature_names(rule: str, sigma: float = DEFAULT_SIGMA) -> tuple[str, str]:
    """The (eligibility, error) feature names of perturbation rule ``"np"`` or ``"wp"`` at noise
    variance ``sigma``, registering them (and the rule's ``*_update`` feature) in this process if needed."""
    if rule not in PERTURBATION_FEATURES:
        raise ValueError(f"rule={rule!r}: perturbation features exist for {sorted(PERTURBATION_FEATURES)}")
    sigma = check_sigma(sigma)
    return _register(rule, sigma, "" if sigma == DEFAULT_SIGMA else f"[sigma={sigma!r}]")


for _rule in PERTURBATION_FEATURES:
    feature_names(_rule)

register_feature("bernoulli_eligibility",
                 "REINFORCE eligibility of a Bernoulli unit's incoming synapse, 1/B sum_b (h_b - sigmoid(z_b)) x_b "
                 "(zero for deterministic layers)")(weight_max_env.bernoulli_eligibility)
register_feature("output_gradient",
                 "dE/dw for synapses into output units given their inputs (the output unit's delta rule); "
                 "zero elsewhere")(weight_max_env.output_gradient)
