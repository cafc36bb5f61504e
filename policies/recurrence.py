"""The GRU recurrence both recurrent policies share (``marl_net.policies.recurrent_policy``: a state
per synapse row; ``marl_net.policies.neuron_memory``: a state per neuron).

- :func:`reset_rows`: zero the states of the rows whose inner episode begins;
- :func:`gru_update`: one step of torch's ``GRUCell`` from a precomputed input projection;
- :func:`run_gru`: a whole sequence through torch's multi-step GRU (``nn.GRU`` run with a
  ``GRUCell``'s parameters), one call per stretch of steps with no reset inside (``memory="gru"``);
- :func:`gru_sequence` / :class:`GRUSequence` and :func:`gru_step`: the same equations with a
  hand-written backward, on the CPU through the fused kernel (``marl_net.policies.fused_gru``)
  where it applies (``memory="gru_neuron"``; the per-row policy keeps ``run_gru`` so its results
  stay as they were).
"""

from __future__ import annotations

import torch
from torch import nn

from marl_net.policies import fused_gru


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


def tanh_via_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x) = 2 sigmoid(2 x) - 1`` (equal to float rounding, about 1e-7 absolute in float32):
    torch's CPU ``tanh`` is several times slower than its ``sigmoid`` (3 against 0.4 ns per float32
    element, 1 thread, the AVX-512 build this project measures on)."""
    return torch.sigmoid(2.0 * x).mul(2.0).sub(1.0)


def gru_step(gates_in: torch.Tensor, state: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor):
    """One step of torch's GRU equations (gates r, z, n in torch's order) from the input projection
    ``gates_in = W_ih x + b_ih [M, 3 H_m]`` and the state ``[M, H_m]`` -> the new state, computed
    as :class:`GRUSequence` computes a step (the fused kernel where it applies, else torch with the
    candidate's tanh taken as :func:`tanh_via_sigmoid`), so acting and learning agree."""
    return GRUSequence.apply(gates_in.unsqueeze(0), state, None, weight_hh, bias_hh)[0]


class GRUSequence(torch.autograd.Function):
    """The GRU recurrence over a sequence with a hand-written backward (backpropagation through
    time): ``gates_in [T, M, 3 H_m]`` (the input projection of every step, computed by the caller
    in one product), the state before the first step ``state [M, H_m]``, ``keep [T, M, 1]`` (0 where
    a row's state is zeroed before step t, 1 elsewhere; None: no resets) and ``W_hh, b_hh`` ->
    the states after every step ``[T, M, H_m]``.

    Autograd over :func:`gru_step` would record about ten nodes and a weight-gradient product per
    step and copy every step's gradients into place; here the forward writes the gates into
    buffers kept for the backward, the backward carries the state's gradient back step by step
    (writing each step's gate gradients in place) and forms ``dW_hh`` and ``db_hh`` in one product
    over all steps."""

    @staticmethod
    def forward(ctx, gates_in, state, keep, weight_hh, bias_hh):
        ctx.fused = fused_gru.applies(gates_in, weight_hh)
        resets = [] if keep is None else keep.view(gates_in.shape[0], -1).lt(1).any(1).nonzero().flatten().tolist()
        if ctx.fused:
            history, gates_h, rz, cand = fused_gru.forward(gates_in, state, keep, weight_hh, bias_hh)
        else:
            history, gates_h, rz, cand = _forward_loop(gates_in, state, keep, resets, weight_hh, bias_hh)
        ctx.save_for_backward(history, gates_h, rz, cand, keep, weight_hh)
        ctx.resets = resets
        return history[1:]

    @staticmethod
    def backward(ctx, grad_states):
        history, gates_h, rz, cand, keep, weight_hh = ctx.saved_tensors
        steps, rows, m = cand.shape
        if ctx.fused:
            grad_gates_in, grad_gates_h, carry = fused_gru.backward(grad_states, history, gates_h, rz, cand, keep,
                                                                    weight_hh)
        else:
            grad_gates_h, grad_n, carry = _backward_loop(grad_states, history, gates_h, rz, cand, keep, ctx.resets,
                                                         weight_hh)
            grad_gates_in = torch.cat([grad_gates_h[..., : 2 * m], grad_n], -1)
        flat = grad_gates_h.view(-1, 3 * m)
        grad_w = grad_b = None
        if ctx.needs_input_grad[3]:
            previous = history[:-1] if keep is None else history[:-1] * keep
            grad_w = flat.t() @ previous.reshape(-1, m)
        if ctx.needs_input_grad[4]:
            grad_b = flat.sum(0)
        return grad_gates_in, carry, None, grad_w, grad_b


def _forward_loop(gates_in, state, keep, resets, weight_hh, bias_hh):
    """:class:`GRUSequence`'s forward in torch, step by step, into the buffers its backward keeps."""
    steps, rows, m = gates_in.shape[0], state.shape[0], state.shape[1]
    history = gates_in.new_empty(steps + 1, rows, m)  # the state before every step, then after the last
    history[0] = state
    gates_h = gates_in.new_empty(steps, rows, 3 * m)
    rz, cand = gates_in.new_empty(steps, rows, 2 * m), gates_in.new_empty(steps, rows, m)
    for t in range(steps):
        h = history[t] * keep[t] if t in resets else history[t]
        torch.addmm(bias_hh, h, weight_hh.t(), out=gates_h[t])
        torch.add(gates_in[t, :, : 2 * m], gates_h[t, :, : 2 * m], out=rz[t]).sigmoid_()
        n = torch.addcmul(gates_in[t, :, 2 * m :], rz[t, :, :m], gates_h[t, :, 2 * m :], out=cand[t])
        n.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)  # tanh_via_sigmoid
        torch.lerp(n, h, rz[t, :, m:], out=history[t + 1])
    return history, gates_h, rz, cand


def _backward_loop(grad_states, history, gates_h, rz, cand, keep, resets, weight_hh):
    """:class:`GRUSequence`'s backward recurrence in torch: the gradients of the hidden gates'
    pre-activations ``[T, M, 3 H_m]`` (r, z and r times n's), of n's pre-activation ``[T, M, H_m]``
    and of the start state ``[M, H_m]``."""
    steps, rows, m = cand.shape
    grad_gates_h = cand.new_empty(steps, rows, 3 * m)
    grad_n = torch.empty_like(cand)
    carry = torch.zeros_like(history[0])
    for t in reversed(range(steps)):
        d = carry + grad_states[t]
        h = history[t] * keep[t] if t in resets else history[t]
        r, z, n = rz[t, :, :m], rz[t, :, m:], cand[t]
        dpre_n = torch.mul(d * (1.0 - z), 1.0 - n * n, out=grad_n[t])
        dpre_r = dpre_n * gates_h[t, :, 2 * m :] * r * (1.0 - r)
        dpre_z = d * (h - n) * z * (1.0 - z)
        torch.cat([dpre_r, dpre_z, dpre_n * r], 1, out=grad_gates_h[t])
        carry = torch.addmm(d * z, grad_gates_h[t], weight_hh)
        if t in resets:
            carry = carry * keep[t]
    return grad_gates_h, grad_n, carry


def gru_sequence(cell: nn.GRUCell, seq: torch.Tensor, state: torch.Tensor,
                 starts: torch.Tensor | None = None) -> torch.Tensor:
    """The GRU ``cell`` through a sequence ``seq [T, M, H]`` from ``state [M, H_m]``, with the rows'
    states zeroed before step t where ``starts [T, M]`` is true -> the states after every step
    ``[T, M, H_m]``: one input projection for all steps, then :class:`GRUSequence`. Equals stepping
    :func:`gru_step` (and torch's ``GRUCell``, float rounding)."""
    gates_in = nn.functional.linear(seq, cell.weight_ih, cell.bias_ih)
    keep = None
    if starts is not None and bool(starts.any()):
        keep = (~starts).to(seq.dtype).unsqueeze(-1)
    return GRUSequence.apply(gates_in, state, keep, cell.weight_hh, cell.bias_hh)
