"""The per-neuron memory's GRU recurrence as a fused CPU kernel (``gru_kernel.cpp``).

:class:`marl_net.policies.recurrence.GRUSequence` runs the recurrence one step at a time in torch
(a dozen small tensor operations per step, forward and backward); the kernel keeps each row's
state in registers through all the steps. Built on first use with the synapse kernel's flags
(``marl_net.native``; IEEE arithmetic), recorded as :data:`KERNEL` in ``numerics``' record. Where
it does not apply (a GPU tensor, float64, a state width not in 16/32/48/64, kernels switched off,
no compiler) the torch loop runs; the two agree to float rounding (the kernel's tanh is a rational
function about 1e-6 from torch's; ``tests/test_memory.py``).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from marl_net import native, numerics
from marl_net.policies.fused_layer import FLAGS

SOURCE = Path(__file__).with_name("gru_kernel.cpp")
KERNEL = "gru_kernel"  # the name numerics records it under
WIDTHS = (16, 32, 48, 64)

_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (with one warning) when it cannot be built here."""
    global _lib
    if _lib is None:
        lib = native.load(SOURCE, FLAGS, "the memory's GRU runs its torch loop")
        if lib is None:
            return None
        ptr, n = ctypes.c_void_p, ctypes.c_long
        lib.gru_forward.argtypes = [ptr] * 5 + [n] * 3 + [ptr] * 4
        lib.gru_backward.argtypes = [ptr] * 7 + [n] * 3 + [ptr] * 3
        lib.gru_forward.restype = lib.gru_backward.restype = ctypes.c_int
        lib.set_threads.argtypes, lib.set_threads.restype = [n], None
        _lib = lib
    return _lib


def applies(gates_in: torch.Tensor, weight_hh: torch.Tensor) -> bool:
    """Whether the kernel can run the recurrence of ``gates_in [T, M, 3 H_m]`` with ``weight_hh``."""
    return (native.enabled() and gates_in.device.type == "cpu" and gates_in.dtype == weight_hh.dtype == torch.float32
            and weight_hh.shape[1] in WIDTHS and library() is not None)


def _call(name: str, *args) -> None:
    numerics.record_ran(KERNEL)
    lib = library()
    lib.set_threads(numerics.kernel_threads())
    raw = [a.data_ptr() if isinstance(a, torch.Tensor) else (None if a is None else a) for a in args]
    if getattr(lib, name)(*raw) != 0:
        raise ValueError(f"{name}: the state width is not one of {WIDTHS}; check applies() first")


def forward(gates_in: torch.Tensor, state: torch.Tensor, keep: torch.Tensor | None, weight_hh: torch.Tensor,
            bias_hh: torch.Tensor):
    """-> ``history [T + 1, M, H_m]`` (the state before every step, then after the last), ``gates_h
    [T, M, 3 H_m]``, ``rz [T, M, 2 H_m]``, ``n [T, M, H_m]`` (``GRUSequence``'s buffers);
    ``keep [T, M, 1]`` or None. No autograd."""
    steps, rows, m = gates_in.shape[0], state.shape[0], state.shape[1]
    history, gates_h = gates_in.new_empty(steps + 1, rows, m), gates_in.new_empty(steps, rows, 3 * m)
    rz, cand = gates_in.new_empty(steps, rows, 2 * m), gates_in.new_empty(steps, rows, m)
    keep = None if keep is None else keep.detach().contiguous()
    _call("gru_forward", gates_in.detach().contiguous(), state.detach().contiguous(), keep,
          weight_hh.detach().t().contiguous(), bias_hh.detach().contiguous(), steps, rows, m, history, gates_h, rz, cand)
    return history, gates_h, rz, cand


def backward(grad_states: torch.Tensor, history: torch.Tensor, gates_h: torch.Tensor, rz: torch.Tensor,
             cand: torch.Tensor, keep: torch.Tensor | None, weight_hh: torch.Tensor):
    """-> the gradients of the gate pre-activations as the input projection sees them and as the
    hidden projection sees them (n's part times r), both ``[T, M, 3 H_m]``, and of the start state
    ``[M, H_m]``."""
    steps, rows, m = cand.shape
    grad_gates_in, grad_gates_h = gates_h.new_empty(steps, rows, 3 * m), gates_h.new_empty(steps, rows, 3 * m)
    carry = cand.new_empty(rows, m)
    _call("gru_backward", grad_states.contiguous(), history, gates_h, rz, cand, keep, weight_hh.detach().contiguous(),
          steps, rows, m, grad_gates_in, grad_gates_h, carry)
    return grad_gates_in, grad_gates_h, carry
