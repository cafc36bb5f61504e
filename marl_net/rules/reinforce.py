"""REINFORCE for a coagent network of Bernoulli-logistic units (Chung 2022, eq. 3).

The network (Chung's "actor"): hidden layers of Bernoulli-logistic units,
``h ~ Bernoulli(sigmoid(z))``, and a softmax output over K actions. As in the paper's code, the
softmax has K - 1 free logits and a last logit fixed at 0 (for K = 2 the output is one
Bernoulli-logistic unit). E copies run at once: every tensor has a leading copy dimension and one
sample per copy (online learning, batch 1).

Every unit is a REINFORCE learner: its *local* log-probability gradient is

    d log pi_l / d z_l = (h_l - mean_l) / temperature,        d/dW_l = that (outer) input_l

(``mean`` = sigmoid(z) for a Bernoulli unit, the softmax probability for the output). A rule turns
these into raw ascent directions ``u_l`` (the update with step size 1, before any optimizer);
REINFORCE multiplies every unit's eligibility by the same global signal G (eq. 3):

    u_l = G * z_l,    z_l = gamma * lambda * z_l + grad log pi_l      (z_l reset at episode start)

With ``explore_prob`` set, the variance reduction of Thomas (2011) as we read it: at every step each
hidden unit explores (samples) with probability ``explore_prob`` and otherwise emits its most
likely value 1[sigmoid(z) > 0.5]; only exploring units get an eligibility.

Rules return their raw updates flattened, ``[E, P]``, in the order of :attr:`CoagentActor.params`
(``split(update, actor.params)`` gives ``[uW_0, ub_0, uW_1, ...]``), so the caller picks the
optimizer (Chung: Adam).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marl_net import seeding
from marl_net.network import NetworkSpec, activate

HIDDEN_UNIT_TYPES = ("bernoulli", "relu")


@dataclass
class ActorStep:
    """What one forward pass of the actor sampled, layer by layer (each ``[E, n]``).

    ``inputs[l]`` feeds weight layer l, ``preacts[l]`` is its pre-activation (already divided by the
    temperature), ``means[l]`` the unit means (sigmoid / softmax probabilities of the free logits;
    for deterministic units the activity itself), ``outputs[l]`` the emitted values (one-hot over the
    free logits for the output layer), ``explore[l]`` the Thomas (2011) exploration mask or None.
    """

    inputs: list[torch.Tensor]
    preacts: list[torch.Tensor]
    means: list[torch.Tensor]
    outputs: list[torch.Tensor]
    action: torch.Tensor  # [E] int64
    explore: list[torch.Tensor | None]
    temperatures: list[float]


def glorot_uniform(gens, n_out: int, n_in: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))`` for every copy (as in Chung's code), ``[E, n_out, n_in]``."""
    lim = (6.0 / (n_in + n_out)) ** 0.5
    return (seeding.rand(gens, (n_out, n_in), device=device, dtype=dtype) * 2 - 1) * lim


def init_params(spec: NetworkSpec, gens, device=None, dtype=torch.float32) -> list[torch.Tensor]:
    """Glorot-uniform weights and small uniform biases (U(-1e-3, 1e-3)) for E = len(gens) copies,
    as a flat list ``[W_0, b_0, W_1, b_1, ...]``."""
    params = []
    for n_in, n_out in zip(spec.layers[:-1], spec.layers[1:]):
        params.append(glorot_uniform(gens, n_out, n_in, device=device, dtype=dtype))
        params.append((seeding.rand(gens, (n_out,), device=device, dtype=dtype) * 2 - 1) * 1e-3)
    return params


def coagent_preact(weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """A layer's pre-activation ``b + W h`` ``[E, n_out]`` for inputs ``h`` ``[E, n_in]`` (one sample per
    copy), as the actor computes it (one ``baddbmm``). The env's forward pass uses it under
    ``rl_draws="chung"`` (``marl_net.core``), so both sum in the same order, bit for bit."""
    return torch.baddbmm(bias.unsqueeze(-1), weight, h.unsqueeze(-1)).squeeze(-1)


class CoagentActor:
    """E copies of Chung's actor: ``spec.layers = (n_in, hidden..., n_actions - 1)``.

    ``spec.hidden_activation`` is ``bernoulli`` (the coagent network) or ``relu`` (the deterministic
    network of the backprop baseline). ``params`` may be views into a flat optimizer buffer.
    """

    def __init__(self, spec: NetworkSpec, params: list[torch.Tensor], output_temperature: float = 1.0,
                 explore_prob: float | None = None):
        if spec.hidden_activation not in HIDDEN_UNIT_TYPES:
            raise ValueError(f"hidden_activation={spec.hidden_activation!r}: the actor supports {HIDDEN_UNIT_TYPES}")
        if len(params) != 2 * spec.num_layers:
            raise ValueError(f"got {len(params)} parameter tensors; pass [W_0, b_0, ..., W_L-1, b_L-1] "
                             f"({2 * spec.num_layers} tensors) for layers {spec.layers}")
        if not output_temperature > 0:
            raise ValueError(f"output_temperature={output_temperature!r} must be positive")
        if explore_prob is not None and not 0 < explore_prob <= 1:
            raise ValueError(f"explore_prob={explore_prob!r} must be in (0, 1], or None to explore always")
        if explore_prob is not None and spec.hidden_activation != "bernoulli":
            raise ValueError("explore_prob (Thomas 2011) needs stochastic hidden units: use hidden_activation='bernoulli'")
        self.spec = spec
        self.params = params
        self.output_temperature = float(output_temperature)
        self.explore_prob = explore_prob

    @property
    def weights(self) -> list[torch.Tensor]:
        return self.params[0::2]

    @property
    def biases(self) -> list[torch.Tensor]:
        return self.params[1::2]

    @property
    def num_hidden_units(self) -> int:
        return sum(self.spec.layers[1:-1])

    @property
    def num_uniforms(self) -> int:
        """Uniform draws one step consumes per copy: one per hidden unit, (Thomas) one more per
        hidden unit for the exploration mask, and one for the action."""
        stochastic = self.spec.hidden_activation == "bernoulli"
        n = self.num_hidden_units if stochastic else 0
        if self.explore_prob is not None:
            n += self.num_hidden_units
        return n + 1

    def act(self, x: torch.Tensor, uniforms: torch.Tensor) -> ActorStep:
        """Sample every unit for observations ``x`` ``[E, n_in]`` from ``uniforms`` ``[E, num_uniforms]``."""
        e = self.params[0].shape[0]
        if x.dim() != 2 or x.shape != (e, self.spec.layers[0]):
            raise ValueError(f"x has shape {tuple(x.shape)}; pass [E={e}, n_in={self.spec.layers[0]}]")
        if uniforms.shape != (e, self.num_uniforms):
            raise ValueError(f"uniforms has shape {tuple(uniforms.shape)}; pass [E={e}, {self.num_uniforms}]")
        inputs, preacts, means, outputs, explore = [], [], [], [], []
        h, col = x, 0
        n_layers = self.spec.num_layers
        for l in range(n_layers - 1):
            n = self.spec.layers[l + 1]
            z = coagent_preact(self.weights[l], self.biases[l], h)
            inputs.append(h)
            preacts.append(z)
            if self.spec.hidden_activation == "bernoulli":  # network.activate's rule, sigmoid kept
                mean = torch.sigmoid(z)
                out = (uniforms[:, col:col + n] < mean).to(z.dtype)
                col += n
            else:
                mean = out = activate(z, self.spec.hidden_activation)
            mask = None
            if self.explore_prob is not None:
                mask = (uniforms[:, col:col + n] < self.explore_prob).to(z.dtype)
                col += n
                out = mask * out + (1 - mask) * (mean > 0.5).to(z.dtype)
            means.append(mean)
            outputs.append(out)
            explore.append(mask)
            h = out
        # softmax output: K - 1 free logits and a fixed zero logit
        z = coagent_preact(self.weights[-1], self.biases[-1], h) / self.output_temperature
        probs = torch.softmax(torch.cat([z, torch.zeros_like(z[:, :1])], dim=1), dim=1)
        action = (probs.cumsum(1)[:, :-1] <= uniforms[:, -1:]).sum(1)
        onehot = (action.unsqueeze(1) == torch.arange(z.shape[1], device=z.device)).to(z.dtype)
        inputs.append(h)
        preacts.append(z)
        means.append(probs[:, :-1])
        outputs.append(onehot)
        explore.append(None)
        temps = [1.0] * (n_layers - 1) + [self.output_temperature]
        return ActorStep(inputs, preacts, means, outputs, action, explore, temps)


def outer_grads(inputs: list[torch.Tensor], dz: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-layer ``[dW_l, db_l]`` from layer inputs ``inputs[l]`` ``[E, n_l]`` and pre-activation
    gradients ``dz[l]`` ``[E, n_{l+1}]``."""
    grads = []
    for l, g in enumerate(dz):
        grads.append(g.unsqueeze(2) * inputs[l].unsqueeze(1))
        grads.append(g)
    return grads


def local_log_prob_grads(step: ActorStep) -> list[torch.Tensor]:
    """Every unit's own REINFORCE eligibility ``grad_w log pi_l(h_l | input_l)`` as ``[gW_0, gb_0, ...]``.

    Units that did not explore (Thomas 2011) get zero. Deterministic units have no log-probability:
    use backprop (``marl_net.rules.ste``) for them.
    """
    dz = []
    for l, (out, mean, mask, temp) in enumerate(zip(step.outputs, step.means, step.explore, step.temperatures)):
        g = (out - mean) / temp
        if mask is not None:
            g = g * mask
        dz.append(g)
    return outer_grads(step.inputs, dz)


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``[E, P]``: the tensors (each ``[E, ...]``) side by side, in order."""
    e = tensors[0].shape[0]
    return torch.cat([t.reshape(e, -1) for t in tensors], dim=1)


def split(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Views of ``flat`` ``[E, P]`` shaped like ``like`` (the inverse of :func:`flatten`)."""
    out, start = [], 0
    for t in like:
        n = t[0].numel()
        out.append(flat[:, start:start + n].view(t.shape))
        start += n
    if start != flat.shape[1]:
        raise ValueError(f"flat tensor has {flat.shape[1]} entries per copy but the shapes need {start}")
    return out


class Traces:
    """Accumulating eligibility traces ``z = decay * z + scale * g`` of a ``[E, P]`` tensor, cleared
    for the copies where an episode starts.

    ``decay`` is gamma * lambda; ``scale`` is 1 (Sutton & Barto) or 1 - lambda (Chung eq. 17).
    With decay 0 the trace is the current gradient.
    """

    def __init__(self, decay: float, scale: float = 1.0):
        if not 0 <= decay <= 1:
            raise ValueError(f"trace decay gamma*lambda={decay!r} must be in [0, 1]")
        self.decay = float(decay)
        self.scale = float(scale)
        self.z: torch.Tensor | None = None

    def accumulate(self, g: torch.Tensor, episode_start: torch.Tensor) -> torch.Tensor:
        if g.dim() != 2 or episode_start.shape != (g.shape[0],):
            raise ValueError(f"pass gradients [E, P] and episode_start [E]; got {tuple(g.shape)} and "
                             f"{tuple(episode_start.shape)}")
        g = g if self.scale == 1 else g * self.scale
        if self.z is None or self.decay == 0:
            self.z = g
        else:
            keep = (~episode_start).to(g.dtype).mul_(self.decay).unsqueeze(1)
            self.z = torch.addcmul(g, self.z, keep)
        return self.z


def scale_rows(signal: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """``signal`` ``[E]`` (one per copy) or ``[E, n]`` (one per unit of a layer) times each tensor."""
    return [t * signal.view(*signal.shape, *([1] * (t.dim() - signal.dim()))) for t in tensors]


def check_signal(signal: torch.Tensor, e: int) -> None:
    if signal.shape != (e,):
        raise ValueError(f"signal has shape {tuple(signal.shape)}; pass one reward / TD error per copy, shape [{e}]")
    if not torch.isfinite(signal).all():
        raise ValueError("signal holds NaN or inf; a diverged critic or environment must end its episode first")


class Reinforce:
    """Every unit maximizes the same global signal (Chung eq. 3), with accumulating traces."""

    name = "reinforce"

    def __init__(self, trace_decay: float = 0.0):
        self.traces = Traces(trace_decay)

    def update(self, actor: CoagentActor, step: ActorStep, signal: torch.Tensor,
               episode_start: torch.Tensor) -> torch.Tensor:
        check_signal(signal, step.action.shape[0])
        z = self.traces.accumulate(flatten(local_log_prob_grads(step)), episode_start)
        return z * signal.unsqueeze(1)
