"""The GRU recurrence both recurrent policies share (``marl_net.policies.recurrent_policy``: a state
per synapse row; ``marl_net.policies.neuron_memory``: a state per neuron).

- :func:`reset_rows`: zero the states of the rows whose inner episode begins;
- :func:`gru_update`: one step of torch's ``GRUCell`` from a precomputed input projection;
- :func:`run_gru`: a whole sequence through torch's multi-step GRU (``nn.GRU`` run with a
  ``GRUCell``'s parameters), one call per stretch of steps with no reset inside.
"""

from __future__ import annotations

import torch
from torch import nn


def reset_rows(state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``state [N, ...]`` with the rows where ``rows [N]`` (bool) is true set to zero (a new inner
    episode begins for them); a new tensor, no Python loop over rows."""
    keep = (~rows.to(torch.bool)).to(state.dtype)
    return state * keep.view(-1, *([1] * (state.dim() - 1)))


def gru_update(gates_in: torch.Tensor, state: torch.Tensor, cell: nn.GRUCell) -> torch.Tensor:
    """torch's ``GRUCell`` update from its input projection ``gates_in = W_ih x + b_ih [M, 3 H_m]``
    (computed once for a whole sequence) and the state ``[M, H_m]``: gates r, z, n in torch's order."""
    m = state.shape[-1]
    gates_h = nn.functional.linear(state, cell.weight_hh, cell.bias_hh)
    reset, update = torch.sigmoid(gates_in[..., : 2 * m] + gates_h[..., : 2 * m]).split(m, -1)
    new = torch.tanh(torch.addcmul(gates_in[..., 2 * m :], reset, gates_h[..., 2 * m :]))
    return torch.lerp(new, state, update)  # (1 - update) * new + update * state


def gru_shell(owner: nn.Module, cell: nn.GRUCell) -> nn.GRU:
    """An ``nn.GRU`` shell run with ``cell``'s parameters through ``torch.func.functional_call``
    (``nn.GRU`` and ``nn.GRUCell`` share the weight layout and gate equations), built once per
    ``owner`` (its first use draws ``nn.GRU``'s initial parameters from torch's global generator)
    and kept outside its submodules: its own parameters are never used, saved nor trained."""
    shell = owner.__dict__.get("_gru_shell")
    if shell is None:
        shell = owner.__dict__["_gru_shell"] = nn.GRU(cell.input_size, cell.hidden_size)
    return shell


def run_gru(shell: nn.GRU, cell: nn.GRUCell, seq: torch.Tensor, state: torch.Tensor,
            starts: torch.Tensor | None = None) -> torch.Tensor:
    """The GRU ``cell`` through a sequence: inputs ``seq [T, L, ..., H]``, the state before the
    first step ``state [L, ..., H_m]`` (the same middle dimensions: one state per input row) and
    ``starts [T, L]`` (bool; true where a new inner episode begins for row l at step t, so its
    states are zeroed before that step) -> the states after every step ``[T, L, ..., H_m]``.

    One ``nn.GRU`` call (``shell``, run with ``cell``'s parameters) per stretch of steps with no
    reset inside: one stretch when no row begins an episode after step 0, else one per step at
    which some row does (the reset rows' states zeroed between stretches). Equals stepping
    :func:`gru_update` (float rounding)."""
    steps, m = seq.shape[0], cell.hidden_size
    params = {"weight_ih_l0": cell.weight_ih, "weight_hh_l0": cell.weight_hh, "bias_ih_l0": cell.bias_ih,
              "bias_hh_l0": cell.bias_hh}
    resets = [] if starts is None else (starts[1:].any(1).nonzero().flatten() + 1).tolist()
    flat, hidden, outs = seq.flatten(1, -2), state.reshape(1, -1, m), []
    for a, b in zip([0, *resets], [*resets, steps]):
        if starts is not None and (a > 0 or bool(starts[0].any())):
            hidden = reset_rows(hidden.view(state.shape), starts[a]).view(1, -1, m)
        out, hidden = torch.func.functional_call(shell, params, (flat[a:b], hidden))
        outs.append(out)
    return (outs[0] if len(outs) == 1 else torch.cat(outs)).view(*seq.shape[:-1], m)
