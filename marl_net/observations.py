"""Per-synapse observation features: a registry.

An agent observes a ``[K, F + 1]`` array: one row per synapse slot it owns (padded to the largest
fan K), one column per enabled feature, and a last column that is the padding mask (1 for a real
synapse, 0 for padding; padded rows are all zero). Global signals (loss, step fraction, ...) are
repeated on every row, so one small network applied to every synapse row sees all it needs.

Features are *local* by default: what a synapse could know from its own weight, its own last
change, the activity of the two neurons it connects, and globally broadcast scalars (the
neuromodulator-like signals). Non-local features are registered with ``privileged=True`` and
must be asked for by name.

A feature is a function ``fn(ctx, layer) -> tensor`` broadcastable to the layer's weight-space
shape ``[E, rows, cols]`` (see ``marl_net.context.StepContext``). Register your own with
:func:`register_feature`; pass ``global_signal=True`` for a value that does not depend on the layer
(one scalar per copy, ``[E, 1, 1]``), which :func:`observe` then computes once per step, not once
per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from marl_net.context import StepContext
from marl_net.observation_rows import write_block

OBS_LIMIT = 1.0e4  # observations are clipped to [-OBS_LIMIT, OBS_LIMIT]; NaN becomes 0


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    fn: Callable[[StepContext, int], torch.Tensor]
    privileged: bool = False
    global_signal: bool = False  # the same value for every layer: computed once per observation


FEATURES: dict[str, Feature] = {}
# Feature families: resolvers ``fn(name) -> bool`` that register a parametrized feature (such as
# ``ema0.9[gradient]``, ``marl_net.accumulators``) the first time its name is asked for, in any
# process, and return True; or return False for a name not theirs; or raise ValueError naming the fix
# for a malformed name of theirs.
FEATURE_FAMILIES: list[Callable[[str], bool]] = []


def register_feature(name: str, description: str, privileged: bool = False, global_signal: bool = False):
    """Decorator: register ``fn(ctx, layer)`` as observation feature ``name`` (``global_signal``:
    its value does not depend on ``layer``)."""

    def deco(fn):
        if name in FEATURES:
            raise ValueError(f"observation feature {name!r} is already registered")
        FEATURES[name] = Feature(name, description, fn, privileged, global_signal)
        return fn

    return deco


def resolve_feature(name: str) -> Feature | None:
    """The feature registered as ``name``, registering it through its family if needed; None if unknown."""
    if name not in FEATURES:
        for resolver in FEATURE_FAMILIES:
            if resolver(name):
                break
    return FEATURES.get(name)


def is_privileged(name: str) -> bool:
    """Whether feature ``name`` is privileged (not local); False for unknown names."""
    feature = resolve_feature(name)
    return feature is not None and feature.privileged


def _scalar(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, 1)


@register_feature("weight", "the synapse's current weight")
def _weight(ctx, l):
    return ctx.params[l]


@register_feature("prev_delta", "the weight's change at the last step, in units of action_scale (the last action)")
def _prev_delta(ctx, l):
    return ctx.delta[l] / ctx.action_scale


def _activity_stats(ctx: StepContext, l: int, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minibatch statistics of ``ctx.pre(l)`` (``side="pre"``) or ``ctx.post(l)`` (``"post"``):
    the mean ``[E, n]``, the centered activity ``[E, B, n]`` and the standard deviation ``[E, n]``.

    Cached per activity tensor: without biases ``post(l)`` and ``pre(l + 1)`` are the same tensor
    and share one entry, so the activity and correlation features compute each statistic once."""
    if side == "post":
        key = f"activity_stats/{l + 1}"
    else:
        key = f"activity_stats/pre{l}" if ctx.spec.bias else f"activity_stats/{l}"

    def compute():
        x = ctx.pre(l) if side == "pre" else ctx.post(l)
        mean = x.mean(1)
        centered = x - mean.unsqueeze(1)
        return mean, centered, centered.pow(2).mean(1).sqrt_()

    return ctx.cached(key, compute)


@register_feature("pre_activity", "presynaptic activity, mean over the minibatch")
def _pre_activity(ctx, l):
    return _activity_stats(ctx, l, "pre")[0].unsqueeze(1)


@register_feature("post_activity", "postsynaptic activity, mean over the minibatch")
def _post_activity(ctx, l):
    return _activity_stats(ctx, l, "post")[0].unsqueeze(2)


@register_feature("pre_post_corr", "correlation of pre- and postsynaptic activity over the minibatch")
def _pre_post_corr(ctx, l):
    def compute():
        _, xc, sx = _activity_stats(ctx, l, "pre")
        _, yc, sy = _activity_stats(ctx, l, "post")
        cov = torch.matmul(yc.transpose(1, 2), xc).div_(xc.shape[1])
        return cov.div_((sx.unsqueeze(1) * sy.unsqueeze(2)).add_(1e-6))

    return ctx.cached(f"pre_post_corr/{l}", compute)


@register_feature("loss", "the current inner loss on the minibatch (global signal)", global_signal=True)
def _loss(ctx, l):
    return _scalar(ctx.loss)


@register_feature("loss_change", "the loss minus the loss before the last step (global signal)", global_signal=True)
def _loss_change(ctx, l):
    return _scalar(ctx.loss - ctx.prev_loss)


@register_feature("rel_loss", "the current inner loss / the loss at the episode's start (global signal)",
                  global_signal=True)
def _rel_loss(ctx, l):
    return _scalar(ctx.loss / ctx.initial_loss.clamp(min=1e-8))


@register_feature("rel_loss_change", "(loss - loss before the last step) / the loss at the episode's start (global)",
                  global_signal=True)
def _rel_loss_change(ctx, l):
    return _scalar((ctx.loss - ctx.prev_loss) / ctx.initial_loss.clamp(min=1e-8))


@register_feature("step_fraction", "steps taken / max_cycles (global signal)", global_signal=True)
def _step_fraction(ctx, l):
    return _scalar(ctx.t.to(ctx.loss.dtype) / ctx.max_cycles)


@register_feature("layer_position", "the synapse's weight layer, 0 for the first and 1 for the last")
def _layer_position(ctx, l):
    return ctx.loss.new_full((1, 1, 1), l / max(ctx.spec.num_layers - 1, 1))


@register_feature("gradient", "backprop gradient dE/dw on the minibatch (privileged: not local)", privileged=True)
def _gradient(ctx, l):
    return ctx.gradient()[l]


DEFAULT_FEATURES = (
    "weight",
    "prev_delta",
    "pre_activity",
    "post_activity",
    "pre_post_corr",
    "rel_loss",
    "rel_loss_change",
    "step_fraction",
    "layer_position",
)


def check_features(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    if not names:
        raise ValueError(f"observations=(): enable at least one feature, e.g. {list(DEFAULT_FEATURES)}")
    unknown = [n for n in names if resolve_feature(n) is None]
    if unknown:
        raise ValueError(f"unknown observation features {unknown}; choose from {sorted(FEATURES)} "
                         "or an accumulator such as 'ema0.9[gradient]'")
    if len(set(names)) != len(names):
        raise ValueError(f"observations={list(names)} lists a feature twice")
    return names


def sanitize(x: torch.Tensor) -> torch.Tensor:
    """NaN -> 0, everything else clipped to [-OBS_LIMIT, OBS_LIMIT] (infinities included)."""
    return torch.nan_to_num(x, nan=0.0, posinf=OBS_LIMIT, neginf=-OBS_LIMIT).clamp_(-OBS_LIMIT, OBS_LIMIT)


def observe(ctx: StepContext, names: Sequence[str]) -> torch.Tensor:
    """Agent-space observations ``[E, A, K, len(names) + 1]``: features, then the padding mask.

    Every feature is sanitized (:func:`sanitize`) at its own size, before it is broadcast, and
    each ownership block's rows are written once, straight from the features' views
    (``marl_net.observation_rows``; a C++ pass on the CPU): no feature is stacked, scattered or
    copied to full size first, and the padded table is never filled or swept as a whole. Global
    signals (``global_signal=True``) are computed and sanitized once, not once per layer."""
    own, f = ctx.ownership, len(names)
    out = ctx.loss.new_empty(ctx.copies, own.num_agents, own.max_fan, f + 1)
    global_signals: dict[str, torch.Tensor] = {}
    for b in own.blocks:
        shape = (ctx.copies, *own.weight_space_shape(b.layer))
        columns = [own.block_layout(_sanitized_feature(ctx, name, b.layer, global_signals).expand(shape))
                   for name in names]  # weight space [E, rows, cols] -> the block's [E, agents, fan]
        write_block(out[:, b.start : b.stop], columns, b.fan)
    return out


def _sanitized_feature(ctx: StepContext, name: str, layer: int, global_signals: dict[str, torch.Tensor]):
    """Feature ``name`` of ``layer``, sanitized; a global signal is computed once and kept in
    ``global_signals`` for the other layers."""
    feature = resolve_feature(name)
    if not feature.global_signal:
        return sanitize(feature.fn(ctx, layer))
    if name not in global_signals:
        global_signals[name] = sanitize(feature.fn(ctx, layer))
    return global_signals[name]


import marl_net.perturbation_features  # noqa: E402,F401  (registers the hand-rule features: NP, WP, Weight Max)
import marl_net.accumulators  # noqa: E402,F401  (registers the ema<decay>[<signal>] family)
import marl_net.rl_features  # noqa: E402,F401  (registers the RL features: reward, RPE, REINFORCE eligibility)
