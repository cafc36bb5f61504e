"""Per-synapse observation features as agents observe them (the registry and built-ins: ``marl_net.features``).

An agent observes a ``[K, F + 1]`` array: one row per synapse slot it owns (padded to the largest
fan K), one column per enabled feature, and a last column that is the padding mask (1 for a real
synapse, 0 for padding; padded rows are all zero). In the block layout (:func:`observe` with
``layout="blocks"``) an agent's array has exactly its fan's rows, mask all ones. Global signals (loss, step fraction, ...) are
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

from typing import Sequence

import torch

from marl_net.context import StepContext
from marl_net.features import (  # noqa: F401  (the registry's names, for the modules that import them from here)
    FEATURE_FAMILIES, FEATURES, OBS_LIMIT, Feature, is_privileged, register_feature, resolve_feature, sanitize)
from marl_net.observation_rows import write_block

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


LAYOUTS = ("padded", "blocks")


def observe(ctx: StepContext, names: Sequence[str], layout: str = "padded") -> torch.Tensor | list[torch.Tensor]:
    """Agent-space observations: features, then the padding mask, in ``layout``
    (see ``marl_net.ownership``): ``"padded"`` gives one table ``[E, A, K, len(names) + 1]``,
    ``"blocks"`` a list with one ``[E, agents_b, fan_b, len(names) + 1]`` per ownership block (the
    mask column all ones, no padding slots). A block's rows are the same numbers in both.

    Every feature is sanitized (:func:`sanitize`) at its own size, before it is broadcast, and
    each ownership block's rows are written once, straight from the features' views
    (``marl_net.observation_rows``; a C++ pass on the CPU): no feature is stacked, scattered or
    copied to full size first, and the padded table is never filled or swept as a whole. Global
    signals (``global_signal=True``) are computed and sanitized once, not once per layer."""
    own, width = ctx.ownership, len(names) + 1
    if layout == "padded":
        out = ctx.loss.new_empty(ctx.copies, own.num_agents, own.max_fan, width)
        destinations = [out[:, b.start : b.stop] for b in own.blocks]
    elif layout == "blocks":
        out = [ctx.loss.new_empty(shape) for shape in own.block_shapes(ctx.copies, width)]
        destinations = out
    else:
        raise ValueError(f"layout={layout!r} is unknown; choose one of {list(LAYOUTS)}")
    global_signals: dict[str, torch.Tensor] = {}
    for b, dst in zip(own.blocks, destinations):
        shape = (ctx.copies, *own.weight_space_shape(b.layer))
        columns = [own.block_layout(_sanitized_feature(ctx, name, b.layer, global_signals).expand(shape))
                   for name in names]  # weight space [E, rows, cols] -> the block's [E, agents, fan]
        write_block(dst, columns, b.fan)
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
import marl_net.feedback_alignment  # noqa: E402,F401  (registers the feedback features: FA/DFA signals)
import marl_net.accumulators  # noqa: E402,F401  (registers the ema<decay>[<signal>] family)
import marl_net.rl_features  # noqa: E402,F401  (registers the RL features: reward, RPE, REINFORCE eligibility)
