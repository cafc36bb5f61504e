"""Accumulator observation features ("cheap memory"): per-synapse exponential moving averages.

``ema<decay>[<signal>]`` (e.g. ``ema0.9[gradient]``, ``ema0.99[np_update]``,
``ema0.5[feedback_eligibility]``) is the exponential moving average, at ``decay``, of the
per-synapse observation feature ``signal``: momentum at several time scales, the accumulators
learned optimizers feed their rule (Metz et al.: 0.5, 0.9, 0.99). Within an inner episode, with
``s_t`` the signal as it is observed (sanitized: NaN -> 0, clipped to +-OBS_LIMIT) at the reset
(t = 0) and after each step t:

    a_{-1} = 0,      a_t = decay * a_{t-1} + (1 - decay) * s_t

and the observation at t shows ``a_t``. The state lives in the core
(``NetworkWeightsCore.accumulators``: ``{name: [E, rows, cols] per layer}``), is zero at every
reset of a copy (the fast path's partial autoresets included), is updated once per evaluation,
and is part of the fast path's env state (``marl_net.fast.vector_env.VectorNetworkEnv.state_dict``). Both views
call the core, so the PettingZoo env and the batched env see the same values. With no accumulator
feature enabled, the core keeps no state and computes nothing.

``signal`` may be any registered per-synapse feature (not a global signal, not itself an
accumulator); the accumulator is privileged iff its signal is. Names are resolved on first use in
any process (the ``ema`` feature family in ``marl_net.observations``), so nothing needs to be
registered before a config is built; :func:`ema_feature_names` lists (and registers) a set::

    from marl_net.accumulators import ema_feature_names
    names = ema_feature_names("gradient")        # ('ema0.5[gradient]', 'ema0.9[gradient]', 'ema0.99[gradient]')
    EnvConfig(observations=DEFAULT_FEATURES + names)

``rms<decay>[<signal>]`` (e.g. ``rms0.99[gradient]``) is the signal divided by its own running
root mean square, as Adam and RMSprop scale a gradient: with ``v_t`` the moving average of
``s_t**2`` (the same recurrence) and the bias correction ``vhat_t = v_t / (1 - decay**(t + 1))``,
the observation is ``s_t / (sqrt(vhat_t) + 1e-12)`` (0 where the signal has always been 0). It is
scale-free: the same rule sees the same numbers whether a task's gradients are 1e-4 or 1, which is
what lets a rule meta-trained on one network run on another. At a reset it is ``sign(s_0)``; its
magnitude is at most ``(1 - decay) ** -0.5``. Per synapse and in time only, so it is local iff its
signal is.

``adam[<signal>]`` (e.g. ``adam[gradient]``) is Adam's update direction on the signal, with
``torch.optim.Adam``'s defaults (beta1 0.9, beta2 0.999, eps 1e-8; ``marl_net.rules.adam``), and
``adam<beta1>[<signal>]`` (e.g. ``adam0.7[feedback_eligibility]``) the same with another beta1:
``m_t`` the moving average of ``s_t`` at beta1, ``v_t`` that of ``s_t**2`` at beta2, and the
observation ``(m_t / (1 - beta1**(t+1))) / (sqrt(v_t) / sqrt(1 - beta2**(t+1)) + eps)``. Its state
per layer is ``[E, 2, rows, cols]`` (m and v). ``-lr`` times ``adam[gradient]`` is the ``adam``
hand rule's step (equal to float rounding; ``tests/test_base_rules.py``), which is how the gradient
level's learned rule runs as a correction to Adam (``marl_net.base_rules``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from marl_net.context import StepContext
from marl_net.features import FEATURE_FAMILIES, FEATURES, register_feature, resolve_feature, sanitize
from marl_net.rules.adam import DEFAULT_BETAS as ADAM_BETAS, DEFAULT_EPS as ADAM_EPS

DEFAULT_DECAYS = (0.5, 0.9, 0.99)
# a moving average of the signal; the signal over its running root mean square; Adam's direction
KINDS = ("ema", "rms", "adam")
_NAME = re.compile(r"^(?P<kind>ema|rms|adam)(?P<decay>[^\[\]]*)\[(?P<signal>.*)\]$")
_EPS = 1e-12


@dataclass(frozen=True)
class Accumulator:
    name: str
    signal: str
    decay: float
    kind: str = "ema"  # one of KINDS


ACCUMULATORS: dict[str, Accumulator] = {}


def ema_name(signal: str, decay: float, kind: str = "ema") -> str:
    return f"{kind}{float(decay)!r}[{signal}]"


def signal_choices() -> list[str]:
    """The features an accumulator can average: registered, per synapse, not accumulators."""
    return sorted(n for n, f in FEATURES.items() if not f.global_signal and n not in ACCUMULATORS)


def _check(signal: str, decay: float, name: str) -> None:
    if not (math.isfinite(decay) and 0.0 < decay < 1.0):
        raise ValueError(f"observation feature {name!r}: decay {decay!r} must lie strictly between 0 and 1, "
                         f"e.g. {ema_name(signal, 0.9)!r}; the usual set is {list(DEFAULT_DECAYS)}")
    feature = None if signal in ACCUMULATORS or _NAME.match(signal) else resolve_feature(signal)
    if feature is None or feature.global_signal:
        raise ValueError(f"observation feature {name!r}: {signal!r} is not a per-synapse signal; average one of "
                         f"{signal_choices()}")


def _register(name: str, signal: str, decay: float, kind: str) -> None:
    _check(signal, decay, name)
    source = FEATURES[signal]
    ACCUMULATORS[name] = Accumulator(name, signal, decay, kind)
    what = {"ema": f"exponential moving average (decay {decay:g}) of {signal!r} over the inner episode, zero at reset",
            "rms": f"{signal!r} over its running root mean square (decay {decay:g}, bias-corrected, from zero at reset)",
            "adam": f"Adam's update direction on {signal!r} (betas {(decay, ADAM_BETAS[1])}, eps {ADAM_EPS:g}, from "
                    "zero at reset)",
            }[kind]
    register_feature(name, f"{what} ({'privileged' if source.privileged else 'local'}, as its signal)",
                     privileged=source.privileged)(lambda ctx, l: ctx.accumulators[name][l])


def _resolve(name: str) -> bool:
    """The accumulator feature families: register ``name`` if it is ``ema<decay>[<signal>]``,
    ``rms<decay>[<signal>]``, ``adam[<signal>]`` or ``adam<beta1>[<signal>]``."""
    if not name.startswith(KINDS):
        return False
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"observation feature {name!r}: write an accumulator as ema<decay>[<signal>], "
                         f"rms<decay>[<signal>], adam[<signal>] or adam<beta1>[<signal>], e.g. "
                         f"{ema_name('gradient', 0.9)!r}")
    if match["kind"] == "adam" and not match["decay"]:
        _register(name, match["signal"], ADAM_BETAS[0], "adam")
        return True
    try:
        decay = float(match["decay"])
    except ValueError:
        raise ValueError(f"observation feature {name!r}: decay {match['decay']!r} is not a number; write e.g. "
                         f"{ema_name(match['signal'] or 'gradient', 0.9)!r}") from None
    if match["kind"] == "adam" and decay == ADAM_BETAS[0]:  # one name for one feature
        raise ValueError(f"observation feature {name!r} is adam[{match['signal']}] (beta1 {ADAM_BETAS[0]:g} is "
                         f"Adam's default): write 'adam[{match['signal']}]'")
    _register(name, match["signal"], decay, match["kind"])
    return True


FEATURE_FAMILIES.append(_resolve)


def ema_feature_names(signal: str, decays: Sequence[float] = DEFAULT_DECAYS) -> tuple[str, ...]:
    """The accumulator feature names of ``signal`` at ``decays``, registered in this process."""
    if not decays:
        raise ValueError(f"decays=(): give at least one decay, e.g. {list(DEFAULT_DECAYS)}")
    names = tuple(ema_name(signal, d) for d in decays)
    for n in names:
        resolve_feature(n)
    return names


def accumulators_of(observations: Sequence[str]) -> list[Accumulator]:
    """The accumulators among ``observations``, in order (resolving their names)."""
    return [ACCUMULATORS[n] for n in observations if resolve_feature(n) is not None and n in ACCUMULATORS]


def signals_of(observations: Sequence[str]) -> tuple[str, ...]:
    """``observations`` with every accumulator replaced by the signal it averages (resolving names), so
    checks that depend on which signals an env computes (gradient, feedback matrices) see them."""
    return tuple(ACCUMULATORS[n].signal if resolve_feature(n) is not None and n in ACCUMULATORS else n
                 for n in observations)


def update(accs: Sequence[Accumulator], ctx: StepContext, previous: dict[str, list[torch.Tensor]] | None
           ) -> dict[str, list[torch.Tensor]]:
    """One update of every accumulator's state from this evaluation's signals: ``decay * previous +
    (1 - decay) * x`` with ``x`` the signal (``ema``) or its square (``rms``), per layer ``[E', rows,
    cols]`` for the copies ``ctx`` holds (``adam``: both, ``[E', 2, rows, cols]``); ``previous=None``:
    from zero (a reset). Returns the states and stores the observed values in ``ctx.accumulators``
    for the features to read."""
    states: dict[str, list[torch.Tensor]] = {}
    values: dict[str, list[torch.Tensor]] = {}
    for a in accs:
        layers, shown = [], []
        for l in range(ctx.spec.num_layers):
            shape = (ctx.copies, *ctx.ownership.weight_space_shape(l))
            s = sanitize(FEATURES[a.signal].fn(ctx, l)).expand(shape)
            if a.kind == "adam":
                state, value = _adam(s, None if previous is None else previous[a.name][l], ctx.t, a.decay)
                layers.append(state)
                shown.append(value)
                continue
            fresh = (1.0 - a.decay) * (s if a.kind == "ema" else s * s)
            state = fresh if previous is None else a.decay * previous[a.name][l] + fresh
            layers.append(state)
            if a.kind == "ema":
                shown.append(state)
            else:  # s / sqrt(vhat), vhat = v / (1 - decay ** (updates so far)); t = 0 at the reset's update
                correction = 1.0 - a.decay ** (ctx.t.to(state.dtype) + 1.0)
                shown.append(s / ((state / correction.reshape(-1, 1, 1)).sqrt() + _EPS))
        states[a.name], values[a.name] = layers, shown
    ctx.accumulators = values
    return states


def _adam(s: torch.Tensor, previous: torch.Tensor | None, t: torch.Tensor, beta1: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's moments ``[E, 2, rows, cols]`` after signal ``s`` and its direction, in
    ``torch.optim.Adam``'s order of operations (t = 0 at the reset's update: Adam's step 1)."""
    beta2 = ADAM_BETAS[1]
    m = (1.0 - beta1) * s if previous is None else previous[:, 0].lerp(s, 1.0 - beta1)
    v = (1.0 - beta2) * (s * s) if previous is None else previous[:, 1] * beta2 + (1.0 - beta2) * (s * s)
    step = t.to(torch.float64) + 1.0
    correction1 = (1.0 - beta1 ** step).to(s.dtype).reshape(-1, 1, 1)
    correction2_sqrt = (1.0 - beta2 ** step).sqrt().to(s.dtype).reshape(-1, 1, 1)
    return torch.stack((m, v), dim=1), (m / correction1) / (v.sqrt() / correction2_sqrt + ADAM_EPS)
