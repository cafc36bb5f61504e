"""The policy's per-synapse network as one fused CPU kernel (``synapse_kernel.cpp``).

:class:`SynapsePolicy` spends nearly all its time on tensors of shape ``[synapses, hidden]``:
each layer's output, its tanh, the two reads of the last one (each synapse's share of the action
mean and the pooled summary) and, in the backward, as many again. Each is a pass over memory.
The kernel runs the whole synapse network (1 to ``MAX_DEPTH`` layers) for a few synapse rows at
a time in registers and never writes a hidden layer: the forward returns only ``per_synapse
[N, K]`` and ``pooled [N, H]``; the backward recomputes the layers and returns the weight
gradients.

The kernel is compiled on first use for the machine it runs on and cached (``marl_net.native``:
one build per source, compiler, flags and host under ``$MARL_NET_KERNEL_CACHE``). Where it does
not apply (a GPU tensor, float64, a hidden size not in 16/32/48/64, more than ``MAX_DEPTH``
layers, no compiler, kernels switched off: ``marl_net.numerics``) the policy runs its plain torch path; the two agree
to float rounding (``tests/test_fused_layer.py``).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from marl_net import native, numerics
from marl_net.native import enabled  # numerics' switch (--kernels off, MARL_NET_FUSED=0) turns the kernel off

SOURCE = Path(__file__).with_name("synapse_kernel.cpp")
# IEEE arithmetic (no -ffast-math: a NaN stays a NaN, sums in the source's order), fused
# multiply-add by name (-ffp-contract=fast, GCC's default for C++ anyway); see marl_net.native.
FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared", "-std=c++17", "-pthread"]
HIDDEN_SIZES = (16, 32, 48, 64)
MAX_DEPTH = 3  # layers of the synapse network the kernel takes (DISPATCH_D in the source)
MAX_FEATURES = 256  # columns of an observation row the kernel takes (MAX_F in the source)

_lib: ctypes.CDLL | None = None


def build() -> Path:
    """Compile the kernel (once per source, compiler, flags and host) and return the library's path."""
    return native.build(SOURCE, FLAGS)


def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (with one warning) when it cannot be built here."""
    global _lib
    if _lib is None:
        lib = native.load(SOURCE, FLAGS, "the policy runs its torch path")
        if lib is None:
            return None
        ptr, n = ctypes.c_void_p, ctypes.c_long
        net = [ptr, n, ptr, ptr, ptr]  # the synapse network: WT, depth, W, WdT, b (net_args)
        lib.synapse_forward.argtypes = [ptr, *net] + [ptr] * 2 + [n] * 4 + [ptr] * 2
        lib.synapse_backward.argtypes = [ptr, *net] + [ptr] * 4 + [n] * 4 + [ptr] * 4
        lib.actor_critic_forward.argtypes = [ptr] * 3 + [n] * 4 + net + [ptr] * 10
        lib.actor_critic_backward.argtypes = [ptr] * 3 + [n] * 4 + net + [ptr] * 14
        lib.actor_critic_sample.argtypes = [ptr] * 2 + [n] * 4 + net + [ptr] * 5
        lib.ppo_minibatch.argtypes = [ptr] * 3 + [n] * 4 + net + [ptr] * 5 + [ctypes.c_float] * 3 + [ptr] * 8
        for fn in (lib.synapse_forward, lib.synapse_backward, lib.actor_critic_forward, lib.actor_critic_backward,
                   lib.actor_critic_sample, lib.ppo_minibatch):
            fn.restype = ctypes.c_int
        lib.set_threads.argtypes, lib.set_threads.restype = [n], None
        _lib = lib
    return _lib


def applies(obs: torch.Tensor, hidden: int, param_dtype: torch.dtype = torch.float32, depth: int = 1) -> bool:
    """Whether :func:`synapse_layer` can take observations ``obs`` for a policy with ``hidden``
    units, ``depth`` synapse layers and parameters of ``param_dtype`` (otherwise use the torch path)."""
    return (enabled() and obs.device.type == "cpu" and obs.dtype == param_dtype == torch.float32
            and hidden in HIDDEN_SIZES and 1 <= depth <= MAX_DEPTH and obs.dim() == 3
            and obs.shape[-1] <= MAX_FEATURES and not obs.requires_grad and library() is not None)


def net_args(wt: torch.Tensor, deep_w: torch.Tensor, deep_b: torch.Tensor) -> tuple:
    """The synapse network as the kernel takes it (``Net`` in the source): the first layer
    ``wt [F, H]``, the depth, then the deeper layers' weights ``deep_w [D - 1, H, H]`` in torch's
    layout and transposed, and their biases ``deep_b [D - 1, H]``."""
    return wt, deep_w.shape[0] + 1, deep_w, deep_w.transpose(1, 2).contiguous(), deep_b


class _SynapseLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, obs, wt, w, weights, deep_w, deep_b):
        n, k = weights.shape
        obs, wt, w, weights, deep_w, deep_b = (t.detach().contiguous() for t in (obs, wt, w, weights, deep_w, deep_b))
        per_synapse, pooled = obs.new_empty(n, k), obs.new_empty(n, wt.shape[1])
        _call("synapse_forward", obs, *net_args(wt, deep_w, deep_b), w, weights, n, k, obs.shape[2], wt.shape[1],
              per_synapse, pooled)
        ctx.save_for_backward(obs, wt, w, weights, deep_w, deep_b)
        return per_synapse, pooled

    @staticmethod
    def backward(ctx, grad_synapse, grad_pooled):
        obs, wt, w, weights, deep_w, deep_b = ctx.saved_tensors
        n, k = weights.shape
        grads = [torch.empty_like(t) for t in (wt, w, deep_w, deep_b)]
        _call("synapse_backward", obs, *net_args(wt, deep_w, deep_b), w, weights, grad_synapse.contiguous(),
              grad_pooled.contiguous(), n, k, obs.shape[2], wt.shape[1], *grads)
        grad_wt, grad_w, grad_deep_w, grad_deep_b = grads
        return None, grad_wt, grad_w, None, grad_deep_w, grad_deep_b


def _call(name: str, *args) -> None:
    """Call kernel entry ``name`` (acting and PPO minibatches on ``numerics.kernel_threads()``
    threads; their results do not depend on the count)."""
    numerics.record_ran(numerics.POLICY_KERNEL)
    raw = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    lib = library()
    lib.set_threads(numerics.kernel_threads())
    if getattr(lib, name)(*raw) != 0:
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        raise ValueError(f"{name}: shapes {shapes} are not covered by the fused kernel; check applies() first")


def synapse_layer(obs: torch.Tensor, wt: torch.Tensor, w: torch.Tensor, weights: torch.Tensor,
                  deep_w: torch.Tensor, deep_b: torch.Tensor):
    """The synapse network on every synapse row ``x`` of ``obs``, ``h = tanh(x @ wt)`` then
    ``h = tanh(h @ deep_w[d].T + deep_b[d])`` for each deeper layer, read twice:
    ``(h @ w [N, K], sum_k weights * h [N, H])``.

    ``obs [N, K, F]`` (no gradient), ``wt [F, H]``, ``w [H]``, ``weights [N, K]``, ``deep_w
    [D - 1, H, H]``, ``deep_b [D - 1, H]`` (empty for one layer); gradients flow to ``wt``, ``w``,
    ``deep_w`` and ``deep_b``. Check :func:`applies` first."""
    return _SynapseLayer.apply(obs, wt, w, weights, deep_w, deep_b)
